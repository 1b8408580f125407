"""The typed form of the fields that shape BookGen's pods beyond the environment: extra volumes and
mounts, a pod template (placement, identity, labels), and the text generator. Frozen dataclasses
without logic beyond merging a queue's value with a component's; parsed by volumes.py,
pod_template.py and generator.py, turned into manifests by resources/pod_template.py and
resources/workers.py.

Kept apart from model.py so that those parsers can import these types without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bookgen_operator.core.objects import JSON

GeneratorType = Literal["offline", "openai"]


@dataclass(frozen=True)
class Volumes:
    """Volumes (Kubernetes Volume objects) and the mounts of BookGen's container (VolumeMount
    objects), checked by spec/volumes.py, in the user's order."""

    volumes: tuple[JSON, ...] = ()
    mounts: tuple[JSON, ...] = ()

    def __add__(self, other: Volumes) -> Volumes:
        """The queue's, then a pool's (the parser refuses a name or a mount path given twice)."""
        return Volumes((*self.volumes, *other.volumes), (*self.mounts, *other.mounts))

    def __bool__(self) -> bool:
        return bool(self.volumes or self.mounts)


#: Pod spec fields whose maps merge key by key between a queue's template and a component's.
MERGED_MAPS = ("nodeSelector",)


@dataclass(frozen=True)
class PodTemplate:
    """What a user adds to a pod the operator builds: labels and annotations of the pod, and pod spec
    fields by their Kubernetes names (only those pod_template.POD_FIELDS lists; the rest stay ours)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    spec: Mapping[str, object] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.labels or self.annotations or self.spec)

    def __add__(self, other: PodTemplate) -> PodTemplate:
        """The queue's template with a component's over it: labels, annotations and nodeSelector merge
        key by key (the component's value wins); any other field the component sets replaces the
        queue's (a pool's tolerations are the whole list, `[]` clears the queue's)."""
        spec = {**self.spec, **other.spec}
        for key in MERGED_MAPS:
            mine, theirs = self.spec.get(key), other.spec.get(key)
            if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                spec[key] = {**mine, **theirs}
        return PodTemplate({**self.labels, **other.labels}, {**self.annotations, **other.annotations}, spec)


@dataclass(frozen=True)
class Generator:
    """spec.generator (or a pool's): which text generator the workers run and how it is reached.
    The API key is only ever a reference to a Secret (name, key); its value never passes here."""

    type: GeneratorType = "offline"
    seconds_per_text: float = 0.0
    base_url: str = ""
    model: str = ""
    timeout_seconds: float = 60.0
    #: The Secret holding the API key ("" = no key: a local model server that wants none).
    api_key_secret: str = ""
    api_key_key: str = "api-key"
