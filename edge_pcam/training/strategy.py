"""Pick the tf.distribute strategy: CPU, local GPUs, a TPU, or several workers.

`auto` never touches the network: it uses a multi-worker strategy when
TF_CONFIG names more than one task, MirroredStrategy when GPUs are visible,
a TPU only when this machine is a Cloud TPU VM (local TPU devices) or `--tpu`
is given, else the CPU. The recipe's batch size is per replica; the global
batch is that times `strategy.num_replicas_in_sync`.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from edge_pcam.errors import EdgePcamError, RuntimeUnavailableError

STRATEGIES = ("auto", "cpu", "gpu", "tpu", "multi-worker")
TPU_CONNECT_TIMEOUT_S = 5.0


@dataclass
class StrategyInfo:
    """The strategy chosen, in words, and whether this process writes the run folder."""

    strategy: object
    name: str
    replicas: int
    is_chief: bool
    worker_index: int = 0


def make_strategy(name: str = "auto", tpu: str | None = None) -> StrategyInfo:
    """Build the strategy named `name` (one of STRATEGIES)."""
    if name not in STRATEGIES:
        raise EdgePcamError(f"unknown strategy '{name}' (use one of: {', '.join(STRATEGIES)})")
    import tensorflow as tf

    if tpu is not None and name not in ("auto", "tpu"):
        raise EdgePcamError(f"--tpu {tpu} given with --strategy {name} (use --strategy tpu or auto)")
    if name == "auto":
        if tpu is not None or _local_tpu_present():
            name = "tpu"
        elif _tf_config_workers() > 1:
            name = "multi-worker"
        elif tf.config.list_physical_devices("GPU"):
            name = "gpu"
        else:
            name = "cpu"

    if name == "cpu":
        return StrategyInfo(tf.distribute.get_strategy(), "cpu", 1, True)
    if name == "gpu":
        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            raise RuntimeUnavailableError("--strategy gpu: TensorFlow sees no GPU on this machine "
                                          "(check the CUDA driver and `pip install tensorflow[and-cuda]`)")
        strategy = tf.distribute.MirroredStrategy()
        return StrategyInfo(strategy, f"gpu x{len(gpus)}", strategy.num_replicas_in_sync, True)
    if name == "tpu":
        return _tpu_strategy(tf, tpu)
    return _multi_worker_strategy(tf)


def _tpu_strategy(tf, tpu: str | None) -> StrategyInfo:
    address = tpu if tpu is not None else "local"
    _check_reachable(address)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeUnavailableError(f"--strategy tpu: no TPU reachable at '{address}' ({first})") from None
    return StrategyInfo(strategy, f"tpu {address} x{strategy.num_replicas_in_sync}",
                        strategy.num_replicas_in_sync, True)


def _check_reachable(address: str) -> None:
    """For grpc://host:port addresses, fail fast when nothing listens there."""
    if not address.startswith("grpc://"):
        return
    url = urlparse(address)
    if url.hostname is None or url.port is None:
        raise RuntimeUnavailableError(f"--tpu {address}: expected grpc://HOST:PORT")
    try:
        with socket.create_connection((url.hostname, url.port), timeout=TPU_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RuntimeUnavailableError(f"--strategy tpu: no TPU reachable at {address} ({exc.strerror or exc})") from None


def _local_tpu_present() -> bool:
    """A Cloud TPU VM exposes its chips as /dev/accel* or /dev/vfio devices (no network needed)."""
    return any(Path("/dev").glob("accel*")) or (Path("/dev/vfio").is_dir() and any(Path("/dev/vfio").iterdir())
                                                and os.environ.get("TPU_NAME") is not None)


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EdgePcamError(f"TF_CONFIG is not valid JSON ({exc})") from None


def _tf_config_workers() -> int:
    cluster = _tf_config().get("cluster", {})
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def _multi_worker_strategy(tf) -> StrategyInfo:
    config = _tf_config()
    if not config.get("cluster"):
        raise EdgePcamError("--strategy multi-worker needs TF_CONFIG with the cluster and this task "
                            '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                            '"task": {"type": "worker", "index": 0}})')
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(config["cluster"].get("chief"))
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return StrategyInfo(strategy, f"multi-worker {_tf_config_workers()} workers x{strategy.num_replicas_in_sync} replicas",
                        strategy.num_replicas_in_sync, is_chief, index)


def worker_dir(run_dir: Path, info: StrategyInfo) -> Path:
    """Where this process writes: the run folder on the chief, a temporary folder elsewhere."""
    if info.is_chief:
        return run_dir
    return Path(tempfile.mkdtemp(prefix=f"edge-pcam-worker{info.worker_index}-"))
