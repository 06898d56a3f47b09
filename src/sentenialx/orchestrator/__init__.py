"""Training, distillation and LoRA jobs for the Sentenial-X threat classifier.

Each job is a function that writes files into a folder and returns a
:class:`JobResult` (files, attachments, metadata, lineage) for the hub to
register. Importing this package does not import torch: the jobs import it when
they run. The inference side (:func:`featurize`, :func:`predict_onnx`, the LoRA
merge) lives in :mod:`sentenialx.pipeline`, which never imports this package;
it is re-exported here for training code and notebooks.
"""

from sentenialx.orchestrator.dataset import LABELS, NEW_FAMILY, Dataset, make_dataset
from sentenialx.orchestrator.jobs import (
    BETTER_STUDENT,
    JobResult,
    run_distill_job,
    run_encoder_and_teacher_job,
    run_lora_job,
)
from sentenialx.orchestrator.lora import AdapterConfig, load_adapter, merge_adapter_onnx
from sentenialx.pipeline.features import BUCKETS, NGRAM, FeatureSpec, featurize
from sentenialx.pipeline.predict import open_session, predict_onnx, predict_proba_onnx

__all__ = [
    "AdapterConfig",
    "BETTER_STUDENT",
    "BUCKETS",
    "Dataset",
    "FeatureSpec",
    "JobResult",
    "LABELS",
    "NEW_FAMILY",
    "NGRAM",
    "featurize",
    "load_adapter",
    "make_dataset",
    "merge_adapter_onnx",
    "open_session",
    "predict_onnx",
    "predict_proba_onnx",
    "run_distill_job",
    "run_encoder_and_teacher_job",
    "run_lora_job",
]
