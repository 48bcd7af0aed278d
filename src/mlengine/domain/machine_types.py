"""Machine types → the resources one replica asks for.

Two families, as in Cloud ML Engine:

* Compute Engine types, parsed by rule: ``<family>-<class>-<vCPUs>`` for the n1, n2, e2 and
  c2 families (``n1-standard-8``: 8 vCPUs, 30 GiB) and ``a2-highgpu-<k>g`` (k A100 GPUs).
* The legacy ML Engine types (``standard``, ``large_model``, ``complex_model_m``,
  ``standard_gpu``, …), from a fixed table. Their sizes follow the retired pricing page as
  closely as we know it; treat them as approximate.

GPUs named by a type are *requests*: the local executor places them on real devices or
refuses; CPU and memory are soft on the local executor unless strict placement is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlengine.domain.errors import InvalidArgument


@dataclass(frozen=True)
class Resources:
    """What one replica needs: vCPUs, memory in GiB, GPUs (and their type), TPU cores."""

    cpus: float
    memory_gib: float
    gpus: int = 0
    gpu_type: str | None = None
    tpus: int = 0

    def plus_accelerators(self, accelerator_type: str | None, count: int) -> Resources:
        if count <= 0 or not accelerator_type:
            return self
        if accelerator_type.startswith("TPU"):
            return Resources(
                self.cpus, self.memory_gib, self.gpus, self.gpu_type, self.tpus + count
            )
        return Resources(self.cpus, self.memory_gib, self.gpus + count, accelerator_type, self.tpus)

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpus + other.cpus,
            self.memory_gib + other.memory_gib,
            self.gpus + other.gpus,
            self.gpu_type or other.gpu_type,
            self.tpus + other.tpus,
        )


#: Legacy ML Engine machine types (vCPUs, GiB, GPUs, GPU type).
LEGACY_MACHINE_TYPES: dict[str, Resources] = {
    "standard": Resources(4, 15),
    "large_model": Resources(8, 52),
    "complex_model_s": Resources(8, 7.2),
    "complex_model_m": Resources(16, 14.4),
    "complex_model_l": Resources(32, 28.8),
    "standard_gpu": Resources(8, 30, 1, "NVIDIA_TESLA_K80"),
    "complex_model_m_gpu": Resources(16, 60, 4, "NVIDIA_TESLA_K80"),
    "complex_model_l_gpu": Resources(32, 120, 8, "NVIDIA_TESLA_K80"),
    "standard_p100": Resources(8, 30, 1, "NVIDIA_TESLA_P100"),
    "complex_model_m_p100": Resources(16, 60, 4, "NVIDIA_TESLA_P100"),
    "standard_v100": Resources(8, 30, 1, "NVIDIA_TESLA_V100"),
    "large_model_v100": Resources(8, 52, 1, "NVIDIA_TESLA_V100"),
    "complex_model_m_v100": Resources(16, 60, 4, "NVIDIA_TESLA_V100"),
    "complex_model_l_v100": Resources(32, 120, 8, "NVIDIA_TESLA_V100"),
    "cloud_tpu": Resources(4, 15, tpus=8),
}

#: GiB of memory per vCPU for each Compute Engine family-class.
_GIB_PER_CPU: dict[str, float] = {
    "n1-standard": 3.75,
    "n1-highmem": 6.5,
    "n1-highcpu": 0.9,
    "n2-standard": 4.0,
    "n2-highmem": 8.0,
    "n2-highcpu": 1.0,
    "e2-standard": 4.0,
    "e2-highmem": 8.0,
    "e2-highcpu": 1.0,
    "c2-standard": 4.0,
}
_COMPUTE_ENGINE = re.compile(r"^(?P<family>[a-z0-9]+-[a-z]+)-(?P<cpus>\d{1,3})$")
_A2 = re.compile(r"^a2-highgpu-(?P<gpus>1|2|4|8)g$")

#: The type a replica gets when the plan names none (the BASIC tier's master).
DEFAULT_MACHINE_TYPE = "n1-standard-4"


def known_machine_types() -> list[str]:
    """Examples of accepted names, for error messages and docs."""
    examples = [f"{family}-{n}" for family in _GIB_PER_CPU for n in (4, 8, 16)]
    return sorted(LEGACY_MACHINE_TYPES) + examples + ["a2-highgpu-1g", "a2-highgpu-8g"]


def resources_for(machine_type: str, *, field: str = "machineType") -> Resources:
    """The resources of ``machine_type``; :class:`InvalidArgument` naming ``field`` if unknown."""
    if machine_type in LEGACY_MACHINE_TYPES:
        return LEGACY_MACHINE_TYPES[machine_type]
    a2 = _A2.match(machine_type)
    if a2:
        gpus = int(a2["gpus"])
        return Resources(12 * gpus, 85 * gpus, gpus, "NVIDIA_TESLA_A100")
    match = _COMPUTE_ENGINE.match(machine_type)
    if match and match["family"] in _GIB_PER_CPU and int(match["cpus"]) > 0:
        cpus = int(match["cpus"])
        return Resources(cpus, round(cpus * _GIB_PER_CPU[match["family"]], 2))
    raise InvalidArgument(
        f"Unknown machine type {machine_type!r} in '{field}'. Use a Compute Engine type such as "
        f"'n1-standard-4', 'n1-highmem-8' or 'a2-highgpu-1g', or a legacy type such as "
        f"'standard', 'large_model' or 'standard_gpu' (see docs/machine-types.md).",
        field=field,
    )
