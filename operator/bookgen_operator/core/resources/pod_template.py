"""A user's pod template and extra volumes, merged over a workload the operator built.

`apply_pod_template` adds the template's labels and annotations to the pod (ours win, and the parser
refuses ours anyway) and sets the pod spec fields it gives (core/spec/pod_template.py lists which: the
fields of placement and identity; the security contexts, probes, command, grace period and process
namespace stay ours). It records what it set on the workload (core/removals.py), so a field
later taken out of the template is taken out of the pods. Without a template the workload is returned
unchanged: a queue that sets none keeps the exact manifest it had.

`add_user_volumes` appends the user's volumes to the pod and their mounts to BookGen's container, after
ours (the parser refuses our names and mount points).
"""

from __future__ import annotations

import copy

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.removals import RECORD_ANNOTATION, record
from bookgen_operator.core.spec.pod_model import PodTemplate, Volumes

#: Pod spec keys kept last, after the template's fields, so a rendered pod reads placement first.
_LAST = ("containers", "volumes")


def apply_pod_template(workload: JSON, template: PodTemplate) -> JSON:
    if not template:
        return workload
    pod = workload["spec"]["template"]
    meta = pod.setdefault("metadata", {})
    meta["labels"] = {**template.labels, **meta.get("labels", {})}
    if template.annotations:
        meta["annotations"] = {**template.annotations, **meta.get("annotations", {})}
    spec = {k: v for k, v in pod["spec"].items() if k not in _LAST}
    spec.update({k: copy.deepcopy(v) for k, v in template.spec.items()})
    spec.update({k: pod["spec"][k] for k in _LAST if k in pod["spec"]})
    pod["spec"] = spec
    workload["metadata"].setdefault("annotations", {})[RECORD_ANNOTATION] = record(template)
    return workload


def add_user_volumes(workload: JSON, container: JSON, volumes: Volumes) -> JSON:
    if volumes.volumes:
        pod_spec = workload["spec"]["template"]["spec"]
        pod_spec["volumes"] = [*pod_spec.get("volumes", []), *(copy.deepcopy(v) for v in volumes.volumes)]
    if volumes.mounts:
        container["volumeMounts"] = [*container.get("volumeMounts", []), *(dict(m) for m in volumes.mounts)]
    return workload
