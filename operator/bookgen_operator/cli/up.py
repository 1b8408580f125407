"""`bookgen up` and `bookgen demo`: a BookGenQueue spec run on this machine (local/runtime.py).

Registered into the `bookgen` command by bookgen_operator.cli (COMMAND_MODULES). User mistakes (bad
spec, missing redis-server, a taken port) raise SpecError/LocalError: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec parser and the runtime are imported where used: `bookgen --help` needs neither
    from bookgen_worker.jobs.records import JobRecord
    from rich.console import RenderableType
    from rich.progress import Progress

    from bookgen_operator.core.spec import QueueSpec
    from bookgen_operator.local.runtime import LocalRuntime, UpOptions

DEFAULT_NAME = "bookgen"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = subparsers.add_parser("up", help="run the whole system on this machine (Redis, pools, autoscaler)")
    up.add_argument("-f", "--file", type=Path, help="a BookGenQueue YAML (default: the default spec)")
    # SUPPRESS: `bookgen --state-dir X up` (the option before the sub-command) must not be reset to None.
    up.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                    help="Redis data, passwords, logs (default $BOOKGEN_STATE_DIR, else ./.bookgen); reuse it "
                         "to keep queued tasks")
    up.add_argument("--redis-url", default=argparse.SUPPRESS, metavar="URL",
                    help="use this Redis instead of starting one (the spec's redis.mode: external)")
    up.add_argument("--no-view", action="store_true", help="print one line per change instead of a live table")
    up.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    _runtime_options(up, redis_port=6380, flower_port=5555)
    up.set_defaults(handler=cmd_up)

    demo = subparsers.add_parser("demo", help="bring the system up, write one biography, show the files, stop")
    demo.add_argument("--chapters", type=int, default=8, help="chapters of the demo book (default 8)")
    demo.add_argument("--subject", default="Ada Lovelace")
    demo.add_argument("--words", type=int, default=300, help="target words per chapter (default 300)")
    demo.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                      help="default: a temporary folder, removed afterwards")
    demo.add_argument("--output-dir", type=Path, help="where the book goes (default $BOOKGEN_OUTPUT_DIR or ./output)")
    demo.add_argument("--no-view", action="store_true", help="print lines instead of a live view")
    demo.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    demo.add_argument("--pace", type=float, default=2.0,
                      help="seconds the offline generator takes per text, standing in for an LLM, so the "
                           "pools have work to scale for (default 2; 0 = as fast as it can)")
    _runtime_options(demo, redis_port=0, flower_port=0)
    demo.set_defaults(handler=cmd_demo, metrics_port=0)


def _runtime_options(parser: argparse.ArgumentParser, *, redis_port: int, flower_port: int) -> None:
    for name, default in (("--redis-port", redis_port), ("--flower-port", flower_port)):
        parser.add_argument(name, type=int, default=default, help=f"0 = any free port (default {default})")
    parser.add_argument("--metrics-port", type=int, help="default: the spec's metrics.port; 0 = any free port")
    parser.add_argument("--grace", type=float, default=60.0,
                        help="seconds a stopping worker gets to finish its task before it is killed (default 60)")


def load_spec(path: Path | None) -> QueueSpec:
    from bookgen_operator.cli.spec_file import load_queue_file
    from bookgen_operator.core.spec import parse_queue

    if path is None:
        return parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                            "metadata": {"name": DEFAULT_NAME}, "spec": {}})
    return load_queue_file(path)


def _options(args: argparse.Namespace, state_dir: Path, environ: Mapping[str, str],
             output_dir: Path | None = None) -> UpOptions:
    from bookgen_operator.local.runtime import UpOptions

    return UpOptions(state_dir=state_dir, environ=environ, redis_port=args.redis_port, flower_port=args.flower_port,
                     metrics_port=args.metrics_port, grace=args.grace, output_dir=output_dir)


def _echo(text: str) -> None:
    print(text, flush=True)


class _Interrupted(Exception):
    pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _serve(runtime: LocalRuntime, *, view: bool, duration: float | None = None,
           extra: Callable[[], RenderableType | None] | None = None,
           done: Callable[[], bool] | None = None, keeps_state: bool = True) -> str:
    """Start the runtime, loop until a signal / duration / `done()`, stop everything. Returns why it stopped."""
    from bookgen_operator.local import view as views

    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    why = "finished"
    started = False  # start() stops what it started when it fails: nothing to drain then
    try:
        try:
            runtime.start()
        except _Interrupted as exc:
            return f"interrupted by {exc} while starting"
        started = True
        for line in [*views.header(runtime.endpoints, str(runtime.state_dir)), *runtime.endpoints.notes,
                     *_pointer(runtime)]:
            _echo(line)
        import asyncio

        why = asyncio.run(_loop(runtime, view, duration, extra, done))
    except _Interrupted as exc:
        why = f"interrupted by {exc}"
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the warm shutdown short
        if started:
            _echo(f"stopping ({why}): workers finish their running tasks (up to {runtime.options.grace:g} s)")
            killed = runtime.shutdown()
            if killed:
                _echo(f"killed after the grace period: {', '.join(killed)}")
            _echo("stopped; queued tasks stay in Redis for the next `bookgen up` with this state folder"
                  if runtime.spec.redis.managed and keeps_state else "stopped")
        for s, handler in previous.items():
            signal.signal(s, handler)
    return why


async def _loop(runtime: LocalRuntime, view: bool, duration: float | None,
                extra: Callable[[], RenderableType | None] | None, done: Callable[[], bool] | None) -> str:
    import asyncio

    from bookgen_operator.local import view as views

    stop = asyncio.Event()
    reason = {"why": "duration reached" if duration is not None else "finished"}
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        reason["why"] = f"interrupted by {sig.name}"
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    reporter = views.LineReporter(_echo)
    live = None
    if view:
        from rich.live import Live

        live = Live(views.screen(runtime.pool_rows()), refresh_per_second=4, transient=False)
        live.start()

    def tick() -> None:
        rows = runtime.pool_rows()
        if live is not None:
            live.update(views.screen(rows, extra() if extra else None))
        else:
            reporter.update(rows)
            if extra is not None:
                extra()
        if done is not None and done():
            reason["why"] = "done"
            stop.set()

    try:
        await runtime.run(stop, duration=duration, on_tick=tick)
    finally:
        if live is not None:
            live.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return reason["why"]


def _pointer(runtime: LocalRuntime) -> list[str]:
    """How another shell reaches this system; the URL itself (with its password) only via `bookgen env`."""
    import shlex

    if runtime.state_dir == (Path.cwd() / ".bookgen").resolve():
        command = 'eval "$(bookgen env)"'
    else:
        command = f'eval "$(bookgen env --state-dir {shlex.quote(str(runtime.state_dir))})"'
    if runtime.state_dir.name != ".bookgen":  # only ./.bookgen is found without being named
        return [f"another shell: {command}"]
    return [f"another shell: {command} (commands run in {runtime.state_dir.parent} need nothing)"]


#: Libraries that log one line per HTTP request at INFO (the Prometheus and endpoint sources query
#: every poll interval): only their warnings are worth a line.
_CHATTY_LOGGERS = ("httpx", "httpcore", "urllib3")


def _logging(view: bool) -> None:
    logging.basicConfig(level=logging.WARNING if view else logging.INFO, format="bookgen up: %(message)s")
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _with_redis_url(spec: QueueSpec, url: str | None) -> QueueSpec:
    if not url:
        return spec
    import dataclasses

    from bookgen_worker.config import redis_url_from_env

    redis_url_from_env({"REDIS_URL": url})  # a bad URL: the one-line ConfigError
    return dataclasses.replace(spec, redis=dataclasses.replace(spec.redis, mode="external", url=url))


def cmd_up(args: argparse.Namespace) -> int:
    from bookgen_operator.cli.target import default_state_dir
    from bookgen_operator.local.runtime import LocalRuntime

    spec = _with_redis_url(load_spec(args.file), getattr(args, "redis_url", None))
    view = not args.no_view and sys.stdout.isatty()
    _logging(view)
    state_dir = getattr(args, "state_dir", None) or default_state_dir(args.environ)
    runtime = LocalRuntime(spec, _options(args, state_dir, args.environ), echo=_echo)
    why = _serve(runtime, view=view, duration=args.duration)
    return 0 if not why.startswith("interrupted by SIGINT") else 130


# ------------------------------------------------------------------------------------------ demo


@dataclasses.dataclass
class _DemoJob:
    """The demo's book job as the loop last saw it."""

    id: str | None = None
    record: JobRecord | None = None
    printed: str | None = None  # the last progress line printed (without a view)


def demo_spec() -> QueueSpec:
    """The default spec, tuned so a short book makes the pools visibly scale: one task per slot, and
    idle workers leave after 10 s instead of 60."""
    from bookgen_operator.core.spec import parse_queue

    return parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "metadata": {"name": "demo"},
                        "spec": {"autoscaling": {"targetPerSlot": 1, "scaleDownWindowSeconds": 10},
                                 "flower": {"enabled": True}, "beat": {"enabled": True}}})


def cmd_demo(args: argparse.Namespace) -> int:
    from bookgen_worker.app import app, configure_app
    from bookgen_worker.jobs import store
    from bookgen_worker.jobs.records import validate_inputs
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bookgen_operator.local.runtime import LocalRuntime

    validate_inputs(args.subject, args.chapters, args.words, "md,docx,pdf", 5, 16)  # bad input: one line, exit 2
    if not 0 <= args.pace <= 600:
        raise ValueError(f"--pace must be between 0 and 600 seconds (got {args.pace:g})")
    environ = {**args.environ, "BOOKGEN_OFFLINE_SECONDS": f"{args.pace:g}"}  # the workers inherit it
    temp = getattr(args, "state_dir", None) is None
    state_dir = Path(tempfile.mkdtemp(prefix="bookgen-demo-")) if temp else args.state_dir
    output = (args.output_dir or Path(environ.get("BOOKGEN_OUTPUT_DIR") or "output")).resolve()
    view = not args.no_view and sys.stdout.isatty()
    _logging(view)
    runtime = LocalRuntime(demo_spec(), _options(args, state_dir, environ, output), echo=_echo)
    job = _DemoJob()
    deadline = time.monotonic() + args.timeout
    progress = Progress(TextColumn("[bold]{task.fields[state]:<10}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"))
    bar = progress.add_task("submitting", total=1, state="PENDING")

    def extra() -> Progress:
        settings = runtime.settings
        assert settings is not None  # extra() runs once the runtime has started
        if job.id is None:
            configure_app(app, settings)
            job.id = store.submit_job(settings, args.subject, args.chapters, args.words, "md,docx,pdf", celery_app=app)
            _echo(f"submitted job {job.id}: a {args.chapters}-chapter biography of {args.subject}")
        record = job.record = store.get_job(settings, job.id)
        progress.update(bar, total=record.total, completed=record.current, description=record.status,
                        state=str(record.state))
        if not view:
            line = f"job {record.state} {record.current}/{record.total}: {record.status}"
            if line != job.printed:
                job.printed = line
                _echo(line)
        return progress

    def done() -> bool:
        if time.monotonic() > deadline:
            _echo(f"the demo did not finish within {args.timeout:g} s")
            return True
        return job.record is not None and job.record.terminal

    completed = False
    try:
        _serve(runtime, view=view, extra=extra, done=done, keeps_state=not temp)
        completed = job.record is not None and str(job.record.state) == "COMPLETED"
    finally:
        if temp and completed:
            shutil.rmtree(state_dir, ignore_errors=True)
        elif temp:
            _echo(f"kept the state folder for a look at the logs: {state_dir / 'logs'}")
    record = job.record
    if record is None:
        return 1
    _echo(f"job {record.id} {record.state}: {record.status}")
    for pool, steps in runtime.scaling_steps.items():
        _echo(f"  autoscaled pool {pool}: {' -> '.join(map(str, steps))} workers")
    for fmt, path in record.outputs.items():
        _echo(f"  {fmt}: {path}")
    for problem in record.errors:
        _echo(f"  problem: {problem}")
    return 0 if str(record.state) == "COMPLETED" else 1
