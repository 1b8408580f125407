"""The BookGenQueue spec as one package: the typed model, the parser, its reading primitives and the
CRD's defaults. Import from here; the modules are:

- model.py: the frozen dataclasses parse_queue produces (QueueSpec, PoolSpec, ...);
- parse.py: parse_queue (body -> QueueSpec or SpecError, the CRD's schema and CEL rules in Python);
- reader.py: typed field access with the field's path in every message;
- defaults.py: the CRD's defaults that are more than a scalar;
- environment.py, exports.py: spec.env/envFrom and spec.exports, each parsed in a module of its own;
- operator_defaults.py: what the chart sets for every queue (registry, pull Secrets, monitor labels).
"""

from bookgen_operator.core.spec.model import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    AutoscalingSpec,
    BeatSpec,
    ExportsClaim,
    ExportsS3,
    ExportsSpec,
    ExportsVolume,
    FlowerSpec,
    ImageSpec,
    MetricsSpec,
    PersistenceSpec,
    PoolSpec,
    PoolType,
    QueueSpec,
    RedisSpec,
    SpecError,
    Toggle,
    WorkerSpec,
)
from bookgen_operator.core.spec.parse import label_map, parse_queue, update_errors

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "AutoscalingSpec",
    "BeatSpec",
    "ExportsClaim",
    "ExportsS3",
    "ExportsSpec",
    "ExportsVolume",
    "FlowerSpec",
    "ImageSpec",
    "MetricsSpec",
    "PersistenceSpec",
    "PoolSpec",
    "PoolType",
    "QueueSpec",
    "RedisSpec",
    "SpecError",
    "Toggle",
    "WorkerSpec",
    "label_map",
    "parse_queue",
    "update_errors",
]
