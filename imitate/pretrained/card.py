"""The exported folder's ``README.md``: a Hugging Face model card written from the run's own records.

YAML front matter (license, the terms of the training data, datasets, tags) and a body with the uses it
is and is not for, how to load it, the preprocessing, the training data and configuration, the results
tables and the provenance hashes. Every value comes from the export's facts (``config.json``'s
``imitate`` block) or the results tables; the fixed text states policy (not for clinical use, the
PhysioNet terms), never a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from imitate.pretrained.layout import ARXIV, ENCODER_WEIGHTS, GREY_TO_RGB, MODEL_WEIGHTS, PAPER

PHYSIONET_LICENSE = "physionet-credentialed-health-data-license-1.5.0"
PHYSIONET_LICENSE_LINK = "https://physionet.org/content/mimic-cxr/view-license/2.0.0/"
PHYSIONET_TERMS = (
    "These weights were learnt from MIMIC-CXR, which PhysioNet releases to credentialed users under the "
    "PhysioNet Credentialed Health Data License 1.5.0 and its Data Use Agreement. Treat them as data derived "
    "from it: share them only with credentialed PhysioNet users who have signed the MIMIC-CXR agreement, do "
    "not try to identify any individual, and do not publish them openly (a public release needs PhysioNet's "
    "agreement, e.g. by depositing the weights on PhysioNet)."
)
DEMO_TERMS = (
    "These weights were learnt from the synthetic demo data that `imitate demo-data` draws (no patient "
    "data). They are released under the MIT license of the code; they only show that the pipeline runs and "
    "have no medical meaning."
)
NOT_CLINICAL = (
    "**Not for clinical use.** This is a research model. It is not a medical device, has not been "
    "validated for diagnosis, triage or any decision about a patient, and its outputs must not be used "
    "for them."
)
INTENDED_USE = (
    "Research on chest radiographs: as a pretrained image encoder to fine-tune or probe for classification, "
    "segmentation and detection; and, with its text projector and the frozen text encoder it was trained "
    "with, for zero-shot classification and image-text retrieval in its joint space. Out of scope: any "
    "clinical use; images other than frontal (PA/AP) chest radiographs; reports in languages other than English."
)


def license_id(facts: Mapping[str, Any]) -> str:
    """The Hugging Face license id of the weights: MIT for the synthetic demo's, ``other`` (PhysioNet's) else."""
    return "mit" if facts["training"]["synthetic_data"] else "other"


def front_matter(facts: Mapping[str, Any], datasets: Sequence[str]) -> dict[str, Any]:
    """The card's YAML header: license, the training data's terms, datasets, tags."""
    header: dict[str, Any] = {"license": license_id(facts)}
    if not facts["training"]["synthetic_data"]:
        header |= {
            "license_name": PHYSIONET_LICENSE,
            "license_link": PHYSIONET_LICENSE_LINK,
            "extra_gated_prompt": PHYSIONET_TERMS,
            "extra_gated_fields": {"PhysioNet username (credentialed, MIMIC-CXR agreement signed)": "text"},
        }
    return {
        **header,
        "library_name": "imitate",
        "pipeline_tag": "zero-shot-image-classification",
        "tags": ["chest-x-ray", "radiology", "vision-language", "contrastive-learning", "timm", "imitate",
                 facts["model"]["backbone"], "not-for-clinical-use"],
        "datasets": list(datasets),
    }


def render_card(
    facts: Mapping[str, Any], tables: Sequence[tuple[str, str]], datasets: Sequence[str], folder: str
) -> str:
    """The whole ``README.md``: front matter, then the body (``tables``: (task, Markdown table) pairs;
    ``folder``: the exported folder's name, as the usage examples load it)."""
    header = yaml.safe_dump(front_matter(facts, datasets), sort_keys=False, allow_unicode=True, width=1000)
    training, model = facts["training"], facts["model"]
    sections = [
        f"# IMITATE {model['backbone']} — run `{facts['run_id']}`, experiment `{facts['experiment']}`",
        f"A chest X-ray vision-language model pretrained by the `imitate` pipeline, a reproduction of "
        f"*{PAPER}* ([{ARXIV}](https://arxiv.org/abs/2310.07355)).",
        NOT_CLINICAL,
        "## Intended use\n\n" + INTENDED_USE,
        _usage(facts, folder),
        _preprocessing(facts["preprocess"]),
        _training(facts, training),
        *([_results(tables)] if tables else []),
        _provenance(facts),
        "## License and terms\n\n" + (DEMO_TERMS if training["synthetic_data"] else PHYSIONET_TERMS),
        "## Citation\n\nLiu, C., Cheng, S., Shi, M., Shah, A., Bai, W., Arcucci, R. IMITATE: Clinical Prior "
        "Guided Hierarchical Vision-Language Pre-training. IEEE Transactions on Medical Imaging, 2024. "
        f"{ARXIV}.",
    ]
    return f"---\n{header}---\n\n" + "\n\n".join(sections) + "\n"


def _usage(facts: Mapping[str, Any], folder: str) -> str:
    backbone = facts["model"]["backbone"]
    prompts = facts["zero_shot"]
    return f"""## How to use

Zero-shot, with the `imitate` package installed (`pip install -e .` in its checkout) and the text
encoder `{facts['text_encoder']['encoder']}` available locally:

```python
import imitate
model, preprocess, _ = imitate.load("{folder}")
image = preprocess("chest.dcm").unsqueeze(0)  # a DICOM, JPG or PNG path, an 8-bit array or a PIL image
texts = ["Pleural effusion", "No pleural effusion"]
probs = (model.encode_image(image) @ model.encode_text(texts).T).softmax(dim=-1)
```

The run's zero-shot prompts were `{prompts['positive']}` and `{prompts['negative']}`
(`imitate classify IMAGES --model FOLDER --labels ...` builds them). The vision encoder alone
(`{ENCODER_WEIGHTS}`, torchvision keys without `fc`):

```python
encoder = imitate.load_encoder("{folder}")                        # pooled {backbone} features
net = timm.create_model("local-dir:{folder}", pretrained=True)    # timm, num_classes=0
resnet = torchvision.models.{backbone}(); resnet.fc = torch.nn.Identity()
resnet.load_state_dict(safetensors.torch.load_file("{folder}/{ENCODER_WEIGHTS}"))
unet = smp.Unet("{backbone}", encoder_weights=None, classes=1)
unet.encoder.load_state_dict(safetensors.torch.load_file("{folder}/{ENCODER_WEIGHTS}"))
```

`{MODEL_WEIGHTS}` holds the whole pretrained model (the encoder, the hierarchical aggregation block and
the three projectors); `config.json` records the sha256 of both files and `imitate.load` refuses files
that do not match."""


def _preprocessing(pre: Mapping[str, Any]) -> str:
    crop = "the official crop to the non-zero pixels, stretched to 0..255, then " if pre["crop_nonzero"] else ""
    stored = "" if pre["image_format"] == "png" else f", stored as JPEG (quality {pre['jpeg_quality']})"
    return (
        "## Preprocessing\n\n"
        f"DICOM through its grayscale pipeline (Modality and VOI LUT, MONOCHROME1 inverted) or an 8-bit image; "
        f"{crop}resized to {pre['image_size']} px in `{pre['resize']}` geometry (Lanczos){stored}; a center crop "
        f"of {pre['crop_size']} × {pre['crop_size']}; [0, 1]; {GREY_TO_RGB}. `imitate.load` returns this "
        "transform; timm's from `config.json` approximates it on RGB images (its resize has no reducing gap, "
        "and its `border` mode pads with the mean, not black)."
    )


def _training(facts: Mapping[str, Any], training: Mapping[str, Any]) -> str:
    data = "the synthetic demo MIMIC-CXR (`imitate demo-data`)" if training["synthetic_data"] else (
        "MIMIC-CXR (frontal views, the official train and validate splits)"
    )
    stop = training["stopped_early_after_epoch"]
    stopped = f", stopped early after epoch {stop}" if stop is not None else ""
    text = facts["text_encoder"]
    lines = [
        "## Training",
        "",
        f"Data: {data}: {training['train_images']:,} training and {training['val_images']:,} validation images.",
        f"Text encoder (frozen): `{text['encoder']}` (weights sha256 `{text['weights_sha256']}`, "
        f"{text['pooling']} pooling, max_length {text['max_length']}, {text['dim']}-d).",
        f"Run: {_count(training['epochs_run'], 'epoch')} ({_count(training['steps'], 'step')}{stopped}); the "
        "exported weights are "
        f"epoch {training['best_epoch']}'s, the lowest validation loss ({training['best_val_loss']:.4f}).",
        "",
        "Configuration (the `model:` and `pretrain:` blocks as run):",
        "",
        "```json",
        json.dumps(training["config"], indent=2, sort_keys=True),
        "```",
    ]
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _results(tables: Sequence[tuple[str, str]]) -> str:
    parts = ["## Results", "", "The run's results tables (`results/tables/<task>.md`; methods as rows):"]
    for task, markdown in tables:
        parts += ["", f"### {task.replace('_', ' ').capitalize()}", "", markdown.strip()]
    return "\n".join(parts)


def _provenance(facts: Mapping[str, Any]) -> str:
    prov = facts["provenance"]
    code, config = prov["code"], prov["config"]
    commit = f"git commit `{code['git_commit']}`" if code["git_commit"] else "not from a git checkout"
    dirty = " (with uncommitted changes)" if code["git_dirty"] else ""
    rows = [
        "## Provenance",
        "",
        "| what | sha256 |",
        "|---|---|",
        *(f"| `{name}` | `{entry['sha256']}` |" for name, entry in sorted(facts["files"].items())),
        *(f"| data: `{name}` | `{digest}` |" for name, digest in sorted(prov["data"].items())),
        f"| code: the imitate package source | `{code['sha256']}` |",
        f"| config: the whole workflow config | `{config['workflow']}` |",
        f"| config: the pretraining settings | `{config['pretrain_settings']}` |",
        "",
        f"Code: imitate {code['version']}, {commit}{dirty}.",
    ]
    return "\n".join(rows)
