"""Serve a PyTorch model: TorchScript (``model.pt``, read with ``torch.jit.load``) or an
exported program (``model.pt2``, read with ``torch.export.load``).

A ``torch.save`` checkpoint (a pickled ``nn.Module`` or state dict) is not served: save the
model with ``torch.jit.script``/``torch.jit.trace`` + ``.save`` or with ``torch.export``.

How instances become the model's inputs — the parameters of ``forward``, named by
TorchScript's schema, or by the exported module's signature:

* **rows** (instances that are not objects): for a model with one input, the instances
  batched into one tensor, ``[N, …]`` (``torch.from_numpy(numpy.array(instances))``).
  A model with several inputs needs objects.
* **objects**: keyed by input name, one tensor per input, each batched over the instances;
  every input is required (``null`` counts as absent), an unknown name is refused. A model
  whose ``forward`` does not name its inputs (``*args``) takes rows only. TorchScript
  parameters with a default value keep it: they are not inputs.
* Element type: ``float32``, unless a ``model.pt2`` was exported with example inputs of
  another type (``int64`` token ids, ``bool`` masks): each input takes its example's type.
  Integer inputs refuse fractional values.

Outputs (run under ``torch.inference_mode``): a tensor gives each instance its row; a dict
of tensors gives one object per instance keyed like the dict; a tuple or list of tensors
gives one object per instance keyed ``output_0``, ``output_1``, …. Request keys other than
``instances`` (``signature_name`` included) are ignored.

Probe: ``input_example.json``; else, for ``model.pt2``, the example inputs saved with the
program (as rows for one input, objects for several); else none.
Threads: ``torch.set_num_threads(threads)``, which is process-wide.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlengine.domain.errors import InvalidArgument
from mlengine.serving.dependencies import import_framework
from mlengine.serving.instances import (
    check_fields,
    check_instances,
    instance_form,
    read_input_example,
)
from mlengine.serving.outputs import batch_rows
from mlengine.serving.predictor import first_line, load_failure

_CHECKPOINT_HINT = (
    "model.pt must be TorchScript (torch.jit.script or torch.jit.trace, then .save) and "
    "model.pt2 a torch.export program (torch.export.save); a torch.save checkpoint is a "
    "pickle and is not served"
)


def load(path: Path, *, threads: int = 1) -> TorchPredictor:
    """Load ``model.pt`` or ``model.pt2``; :class:`FailedPrecondition` when that fails."""
    torch = import_framework("torch", needed_for=f"{path.name} (PYTORCH)")
    torch.set_num_threads(threads)
    try:
        if path.suffix == ".pt2":
            program = torch.export.load(str(path))
            module = program.module()
            names = _signature_names(module.forward)
            example = _example_args(program)
        else:
            module = torch.jit.load(str(path), map_location="cpu")
            module.eval()
            arguments = module.forward.schema.arguments[1:]  # after self
            names = tuple(a.name for a in arguments if not a.has_default_value())
            example = None
    except Exception as exc:  # torch raises RuntimeError, ValueError, pickle errors…
        what = "a torch.export program" if path.suffix == ".pt2" else "a TorchScript model"
        raise load_failure(path, what, exc, _CHECKPOINT_HINT) from exc
    return TorchPredictor(module, path.parent, names=names, example=example)


def _signature_names(forward: Any) -> tuple[str, ...] | None:
    """``forward``'s parameter names, or ``None`` when it takes ``*args``/``**kwargs``."""
    parameters = inspect.signature(forward).parameters.values()
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if any(p.kind in variadic for p in parameters):
        return None
    return tuple(p.name for p in parameters)


def _example_args(program: Any) -> tuple[Any, ...] | None:
    """The positional example tensors saved with an exported program, if any."""
    example = getattr(program, "example_inputs", None)
    if not example or example[1]:
        return None
    args = tuple(example[0])
    return args if args and all(hasattr(a, "dtype") for a in args) else None


class TorchPredictor:
    """A TorchScript or exported module serving JSON instances (module docstring). Thread-safe."""

    framework = "PYTORCH"

    def __init__(
        self,
        module: Any,
        model_dir: Path,
        *,
        names: tuple[str, ...] | None,
        example: tuple[Any, ...] | None = None,
    ) -> None:
        self._torch = import_framework("torch", needed_for="a PyTorch model")
        self.module = module
        self.model_dir = model_dir
        self.input_names = names
        self.example = example
        # Without an example every input is float32; without names, assume one input.
        count = len(example) if example else len(names) if names is not None else 1
        float32 = self._torch.float32
        self.dtypes: tuple[Any, ...] = (
            tuple(arg.dtype for arg in example) if example else (float32,) * count
        )

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        check_instances(instances)
        inputs = self._inputs(instances)
        torch = self._torch
        try:
            with torch.inference_mode():
                output = self.module(*inputs)
        except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
            raise InvalidArgument(
                f"the model rejected the instances: {type(exc).__name__}: {first_line(exc)}",
                field="instances",
            ) from exc
        return batch_rows(self._plain(output), len(instances))

    def probe_instances(self) -> list[Any] | None:
        example = read_input_example(self.model_dir)
        if example is not None:
            return example
        args = self.example
        if not args or any(arg.ndim == 0 for arg in args):
            return None
        columns = [self._plain(arg).tolist() for arg in args]
        if len(args) == 1:
            return list(columns[0])
        if not self.input_names or len(self.input_names) != len(args):
            return None
        rows = len(columns[0])
        names = self.input_names
        return [
            {name: column[i] for name, column in zip(names, columns, strict=True)}
            for i in range(rows)
        ]

    def _inputs(self, instances: list[Any]) -> list[Any]:
        names = self.input_names
        count = len(self.dtypes)
        if instance_form(instances) == "rows":
            if count != 1:
                raise InvalidArgument(
                    f"the model takes {count} inputs ({', '.join(names or ())}); send each "
                    "instance as an object keyed by input name",
                    field="instances[0]",
                )
            return [self._tensor(instances, 0)]
        if names is None:
            raise InvalidArgument(
                "the model does not name its inputs (forward takes *args), so instances "
                "cannot be objects; send each instance as its input's value",
                field="instances[0]",
            )
        check_fields(instances, names)
        for index, instance in enumerate(instances):
            for name in names:
                if instance.get(name) is None:
                    raise InvalidArgument(
                        f"instance {index} lacks the required input {name!r}",
                        field=f"instances[{index}].{name}",
                    )
        return [
            self._tensor([instance[name] for instance in instances], position, name)
            for position, name in enumerate(names)
        ]

    def _tensor(self, values: Sequence[Any], position: int, name: str | None = None) -> Any:
        """``values`` batched as input ``position``'s type, naming the first bad instance."""
        dtype = self.dtypes[position]
        try:
            array = _as_array(values, dtype, self._torch)
        except (TypeError, ValueError) as exc:
            raise self._bad_value(values, dtype, name) from exc
        return self._torch.from_numpy(array).to(dtype)

    def _bad_value(self, values: Sequence[Any], dtype: Any, name: str | None) -> InvalidArgument:
        where = f".{name}" if name else ""
        first: tuple[int, ...] = ()
        for index, value in enumerate(values):
            field = f"instances[{index}]{where}"
            try:
                shape = _as_array([value], dtype, self._torch).shape[1:]
            except (TypeError, ValueError) as exc:
                return InvalidArgument(f"instance {index}: not a {dtype} value: {exc}", field=field)
            if index == 0:
                first = shape
            elif shape != first:
                return InvalidArgument(
                    f"instance {index} has shape {list(shape)} but instance 0 has "
                    f"{list(first)}; the instances of one request form one batch",
                    field=field,
                )
        return InvalidArgument(f"the instances do not form one {dtype} batch", field="instances")

    def _plain(self, output: Any) -> Any:
        """Tensors → numpy; tuples/lists of outputs → ``{"output_i": …}``."""
        torch = self._torch
        if isinstance(output, torch.Tensor):
            tensor = output.detach().cpu()
            if tensor.dtype in (torch.bfloat16, torch.float16):
                tensor = tensor.float()
            return tensor.numpy()
        if isinstance(output, Mapping):
            return {str(key): self._plain(value) for key, value in output.items()}
        if isinstance(output, (tuple, list)):
            return {f"output_{i}": self._plain(value) for i, value in enumerate(output)}
        return output


def _as_array(values: Sequence[Any], dtype: Any, torch: Any) -> npt.NDArray[Any]:
    """``values`` as a numpy array for a tensor of ``dtype`` (whole numbers for integers)."""
    if dtype == torch.bool:
        return np.asarray(values, dtype=np.bool_)
    if dtype.is_floating_point:
        return np.asarray(values, dtype=np.float32)
    wide = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(wide)) or np.any(wide != np.round(wide)):
        raise ValueError("expected whole numbers")
    return wide.astype(np.int64)
