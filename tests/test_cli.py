from __future__ import annotations

import argparse
import base64
import io
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from rich.console import Console

from doubles import DescribingLLM, PaletteImageModel
from http_servers import serve
from pixtill.cli import COMMANDS, UsageError, main, parse_params, register
from pixtill.distiset import Distiset
from pixtill.pipeline import Pipeline, RunSummary, StepSummary
from pixtill.pipeline.rich_progress import RichProgress
from pixtill.steps import LoadDataFromDicts, Step, StepInput
from pixtill.steps.tasks import ImageGeneration, TextGenerationWithImage
from pixtill.steps.typing import StepOutput
from sample_images import image_bytes

ALLOW = ["--allow", "doubles.DescribingLLM", "--allow", "doubles.PaletteImageModel"]


class BrokenLoad(Step):
    def load(self) -> None:
        raise OSError("weights not found")

    def process(self, inputs: StepInput) -> StepOutput:
        yield inputs


def data_url(width: int) -> str:
    return "data:image/png;base64," + base64.b64encode(image_bytes(width, 8)).decode()


def rows(n: int = 3) -> list[dict[str, Any]]:
    return [{"instruction": f"q{i}", "image": data_url(8 + i)} for i in range(n)]


@pytest.fixture
def vision_config(tmp_path: Path) -> Path:
    with Pipeline(name="vision", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(name="load", data=rows(), batch_size=2)
        caption = TextGenerationWithImage(
            name="caption", llm=DescribingLLM(generation_kwargs={"temperature": 0.7})
        )
        paint = ImageGeneration(
            name="paint",
            image_generation_model=PaletteImageModel(),
            input_mappings={"prompt": "generation"},
            output_mappings={"model_name": "image_model"},
        )
        load >> caption >> paint
    return pipeline.dump(tmp_path / "pipeline.yaml")


def table_row(output: str, step: str) -> list[str]:
    """The numbers of the summary table's row for ``step`` (rows in, rows out, failed, cached,
    tokens in, tokens out)."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1] == step:
            return cells[2:-1]
    raise AssertionError(f"no summary row for {step!r} in:\n{output}")


# -- info ------------------------------------------------------------------------------------


def test_info(vision_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--config", str(vision_config), *ALLOW]) == 0
    out = capsys.readouterr().out
    assert "Pipeline 'vision'" in out
    assert "caption: pixtill.steps.tasks.text_generation_with_image.TextGenerationWithImage" in out
    assert "inputs:  instruction, image" in out
    assert "outputs: generation, model_name" in out
    assert "model:   test/describing-vlm (doubles.DescribingLLM)" in out
    assert "inputs:  prompt (as generation)" in out
    assert "model_name (as image_model)" in out
    assert "load -> caption" in out and "caption -> paint" in out
    assert f"Cache folder: {tmp_path / 'cache'}" in out


def test_a_class_that_is_not_allowed_is_refused(
    vision_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--config", str(vision_config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "refusing to load type 'doubles.DescribingLLM'" in err
    assert "--allow doubles.DescribingLLM" in err


def test_missing_config_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["run"]) == 2  # --config is required
    assert "--config" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert "pixtill 0.1.0" in capsys.readouterr().out


# -- run -------------------------------------------------------------------------------------


def test_run_saves_the_dataset_and_reports(
    vision_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "dataset"
    params = ["--param", "caption.num_generations=2", "--param", "caption.group_generations=false"]
    code = main(["run", "--config", str(vision_config), *ALLOW, "--output", str(out_dir), *params])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    distiset = Distiset.load_from_disk(out_dir)
    assert list(distiset) == ["paint"]
    assert len(distiset["paint"]) == 6  # 3 rows x 2 generations
    assert distiset["paint"]["image_model"] == ["test/palette"] * 6
    out = captured.out
    # the bars, drawn once (stdout is not a terminal here), then the summary
    assert "6/6 rows" in out
    assert table_row(out, "caption")[:4] == ["3", "6", "0", "0"]
    assert "rows per leaf: paint: 6" in out
    assert f"dataset: {out_dir}" in out
    assert f'Distiset.load_from_disk("{out_dir}")' in out
    assert f"Saved the dataset to {out_dir}" in out
    assert len(out.splitlines()) < 40


def test_run_uses_the_cache_unless_told_not_to(
    vision_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--config", str(vision_config), *ALLOW, "--output", str(tmp_path / "d")]
    assert main(args) == 0
    assert table_row(capsys.readouterr().out, "caption")[3] == "0"
    assert main(args) == 0
    assert table_row(capsys.readouterr().out, "caption")[3] == "3"
    assert main([*args, "--no-cache", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert table_row(out, "caption")[3] == "0"
    assert "rows" not in out.split("pipeline 'vision'")[0]  # no bars before the summary


def test_default_output_folder(
    vision_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", "-c", str(vision_config), *ALLOW, "--no-progress"]) == 0
    expected = work / "pixtill-output" / "vision"
    assert f"dataset: {expected}" in capsys.readouterr().out
    assert len(Distiset.load_from_disk(expected)["paint"]) == 3


def test_run_failure_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Pipeline(name="broken", cache_dir=tmp_path / "cache") as pipeline:
        LoadDataFromDicts(name="load", data=[{"a": 1}]) >> BrokenLoad(name="broken_step")
    config = pipeline.dump(tmp_path / "broken.json")
    args = ["run", "--config", str(config), "--allow", "test_cli.BrokenLoad"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "pixtill run: error: step 'broken_step' failed to load: OSError: weights not found"
    ]
    assert main([*args, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("pixtill run: error: step 'broken_step'")


# -- --param ---------------------------------------------------------------------------------


def test_param_parsing(vision_config: Path) -> None:
    pipeline = Pipeline.from_file(vision_config, allow=ALLOW[1::2])
    params = parse_params(
        pipeline,
        [
            "caption.llm.generation_kwargs.max_new_tokens=64",
            "caption.llm.generation_kwargs.temperature=0.2",
            "caption.num_generations=3",
            "caption.add_raw_input=false",
            "caption.columns=[instruction]",
            "caption.template=yes",  # YAML would make it True; the field wants a string
            "caption.system_prompt=3",
            "paint.image_format=null",
            "load.batch_size=10",
        ],
    )
    assert params == {
        "caption": {
            # the dict keeps the keys the file set
            "llm": {"generation_kwargs": {"temperature": 0.2, "max_new_tokens": 64}},
            "num_generations": 3,
            "add_raw_input": False,
            "columns": ["instruction"],
            "template": "yes",
            "system_prompt": "3",
        },
        "paint": {"image_format": None},
        "load": {"batch_size": 10},
    }
    # nothing was changed by parsing
    assert pipeline.steps["caption"].num_generations == 1
    assert pipeline.steps["caption"].llm.generation_kwargs == {"temperature": 0.7}


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("ghost.x=1", "no step 'ghost'"),
        ("caption.nope=1", "caption (TextGenerationWithImage) has no field 'nope'"),
        ("caption.llm.nope=1", "caption.llm (DescribingLLM) has no field 'nope'"),
        ("caption.template.x=1", "is a str, not a model or a dict"),
        ("load.batch_size=0", "greater than or equal to 1"),
        ("caption=1", "expected step.field=value"),
        ("caption.num_generations", "expected step.field=value"),
    ],
)
def test_param_errors(vision_config: Path, param: str, message: str) -> None:
    pipeline = Pipeline.from_file(vision_config, allow=ALLOW[1::2])
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_params(pipeline, [param])


def test_param_error_exits_2(vision_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "-c", str(vision_config), *ALLOW, "--param", "caption.nope=1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "has no field 'nope'" in err


# -- a pipeline made of pixtill classes only (an OpenAI-compatible server on 127.0.0.1) --------


PIXTILL_ONLY = """\
pixtill_version: "0.1.0"
pipeline:
  name: served
  description: captions from an OpenAI-compatible server
  cache_dir: {cache}
  steps:
    - name: load
      type: pixtill.steps.LoadDataFromDicts
      params:
        data:
          - {{instruction: "What is this?", image: "{image}"}}
          - {{instruction: "And this?", image: "{image}"}}
    - name: caption
      type: pixtill.steps.tasks.TextGenerationWithImage
      params:
        llm:
          type: pixtill.models.llms.openai.OpenAILLM
          params: {{model: tiny-vlm, base_url: "{base_url}/v1", max_retries: 0}}
  connections:
    - {{from: load, to: caption}}
"""


def test_pixtill_only_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[dict[str, Any], str | None]] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((body, request.headers.get("Authorization")))
        return web.json_response(
            {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "a square"}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 2},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    with serve(app) as base_url:
        config = tmp_path / "served.yaml"
        config.write_text(
            PIXTILL_ONLY.format(cache=tmp_path / "cache", image=data_url(8), base_url=base_url)
        )
        assert main(["info", "-c", str(config)]) == 0
        assert "model:   tiny-vlm (pixtill.models.llms.openai.OpenAILLM)" in capsys.readouterr().out
        out_dir = tmp_path / "out"
        args = ["run", "-c", str(config), "-o", str(out_dir)]
        params = ["-p", "caption.llm.generation_kwargs.temperature=0.2"]
        assert main(args + params) == 0
    out = capsys.readouterr().out
    assert [body["temperature"] for body, _ in seen] == [0.2, 0.2]
    assert {auth for _, auth in seen} == {"Bearer sk-from-the-environment"}
    assert Distiset.load_from_disk(out_dir)["caption"]["generation"] == ["a square"] * 2
    assert table_row(out, "caption")[4:] == ["22", "4"]  # tokens in / out


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pixtill", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pixtill 0.1.0"


# -- the command registry ------------------------------------------------------------------


def test_a_new_command_is_one_register_call(capsys: pytest.CaptureFixture[str]) -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--who", default="world")

    def handler(args: argparse.Namespace) -> int:
        print(f"hello {args.who}")
        return 0

    register("hello", help="say hello", add_arguments=add_arguments, handler=handler)
    try:
        assert main(["hello", "--who", "pixtill"]) == 0
        assert capsys.readouterr().out == "hello pixtill\n"
        with pytest.raises(ValueError, match="already registered"):
            register("hello", help="again", add_arguments=add_arguments, handler=handler)
    finally:
        del COMMANDS["hello"]


# -- RichProgress on its own -----------------------------------------------------------------


def test_rich_progress_reads_request_stats_live() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140, color_system=None)
    calls = {"n": 0}

    def stats() -> dict[str, float | int]:
        calls["n"] += 1
        return {"in_flight": 7, "retried": 2, "rate_limited": 1}

    def broken() -> dict[str, float | int]:
        raise RuntimeError("stats exploded")

    progress = RichProgress(console, dataset_path="/data/set", refresh_per_second=50)
    progress.run_started("p", ["load", "caption", "paint"], 10, {"caption": stats, "paint": broken})
    progress.rows_done("load", StepSummary(rows_in=10, rows_out=10))
    progress.rows_done("caption", StepSummary(rows_in=4, rows_out=4, failed=1))
    assert progress._progress is not None
    progress._progress.refresh()
    screen = buffer.getvalue()
    assert calls["n"] >= 1
    assert "in flight 7" in screen and "retries 2" in screen and "429s 1" in screen
    assert "failed 1" in screen
    assert "4/10 rows" in screen
    summary = RunSummary(
        pipeline="p",
        wall_seconds=75.0,
        steps={"caption": StepSummary(10, 10, 1, 3, 100, 20)},
        leaf_rows={"caption": 10},
    )
    progress.run_finished(summary)
    progress.run_finished(summary)  # idempotent stop
    screen = buffer.getvalue()
    assert "wall time: 1 min 15 s" in screen
    assert "failed rows: 1   tokens: 100 in / 20 out" in screen
    assert 'Distiset.load_from_disk("/data/set")' in screen


def test_rich_progress_stays_short_outside_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=100)  # not a terminal, like a CI log
    progress = RichProgress(console, plain_interval=3600)
    progress.run_started("p", ["load", "gen"], None, {})
    for i in range(5000):
        progress.rows_done("gen", StepSummary(rows_in=i))
    progress.step_finished("gen", StepSummary(rows_in=5000))
    progress.run_finished(RunSummary(pipeline="p", leaf_rows={"gen": 5000}))
    lines = buffer.getvalue().splitlines()
    assert len(lines) < 25
    assert any("5,000/5,000 rows" in line for line in lines)

    buffer = io.StringIO()
    progress = RichProgress(Console(file=buffer, width=100), plain_interval=1e-9)
    progress.run_started("p", ["gen"], None, {})
    progress.rows_done("gen", StepSummary(rows_in=3, failed=1))
    progress.close()
    assert "[p] rows done: gen 3 (1 failed)" in buffer.getvalue()


# -- a dead or misconfigured model server ----------------------------------------------------


@pytest.mark.parametrize("where", ["closed port", "missing /v1"])
def test_run_against_a_dead_server_fails_fast_with_one_line(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = web.Application()  # serves nothing: every path is a 404
    with serve(app) as served:
        if where == "closed port":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                base = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        else:
            base = served
        config = tmp_path / "dead.yaml"
        text = PIXTILL_ONLY.format(cache=tmp_path / "cache", image=data_url(8), base_url="B")
        config.write_text(text.replace('"B/v1", max_retries: 0', f'"{base}"'))
        start = time.monotonic()
        code = main(["run", "-c", str(config), "-o", str(tmp_path / "out"), "--no-progress"])
        elapsed = time.monotonic() - start
    assert code != 0
    assert elapsed < 10
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("pixtill run: error:")]
    assert len(errors) == 1, lines
    message = errors[0]
    assert f"step 'caption': model 'tiny-vlm' at {base}/chat/completions is unavailable" in message
    if where == "closed port":
        assert "connection refused" in message and "is the server running" in message
    else:
        assert "HTTP 404" in message and "need /v1 in base_url" in message
