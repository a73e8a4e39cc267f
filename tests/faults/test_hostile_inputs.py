"""Rows, mappings, templates and config files a hostile or careless user writes: each gives
the right value, or a row error naming step, row and column, or a clear config error; never
a success built from the wrong value, and never minutes of work or gigabytes of memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from doubles import DescribingLLM, PaletteImageModel
from pixtill.errors import RowError, StepConfigError
from pixtill.images import ImageDecodeError, ImageNotFoundError, ImageRef, coerce_image
from pixtill.pipeline import Pipeline
from pixtill.pipeline.config_file import PipelineConfigError
from pixtill.prompts import PromptTemplate
from pixtill.steps import LoadDataFromDicts, LoadDataFromFileSystem
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration, TextGeneration

# -- image values that are neither an image nor a path to one --------------------------------


def test_a_directory_says_it_is_a_directory(tmp_path: Path) -> None:
    # "/tmp/abc" is also valid base64: the message must not be about decoded bytes
    with pytest.raises(ImageNotFoundError, match="is a directory"):
        ImageRef.from_value(str(tmp_path))
    with pytest.raises(ImageNotFoundError, match=r"row 3, column 'photo'.*is a directory"):
        coerce_image(tmp_path, row=3, column="photo")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/cat.png", "s3://bucket/cat.jpg", "gs://b/c.webp", "sftp://h/x.png"]
)
def test_a_url_of_another_scheme_names_the_scheme(url: str) -> None:
    scheme = url.split(":")[0]
    with pytest.raises(ImageDecodeError, match=f"unsupported URL scheme '{scheme}'"):
        ImageRef.from_value(url)


def test_a_windows_drive_is_still_a_path(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="no such file"):
        ImageRef.from_value("C://photos/cat.png")


# -- a text column that holds something else -------------------------------------------------


def _process(task: TextGeneration, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    task.load()
    try:
        return next(task.process(rows))
    finally:
        task.unload()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (5, "expected text, got int"),
        (2.5, "expected text, got float"),
        (True, "expected text, got bool"),
        (["a", "b"], "expected text, got list"),
        ({"text": "hi"}, "expected text, got dict"),
        (b"hi", "expected text, got bytes"),
        ([{"role": "user", "content": "hi"}], "use ChatGeneration"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("template", [None, "Answer briefly: {{ instruction }}"])
def test_an_instruction_that_is_not_text_fails_its_row(
    value: Any, says: str, template: str | None
) -> None:
    extra = {} if template is None else {"template": template}
    llm = DescribingLLM()
    rows = [{"instruction": "fine"}, {"instruction": value}]
    fine, odd = _process(TextGeneration(name="t", llm=llm, **extra), rows)
    assert "user: " in fine["generation"]
    assert odd["generation"] is None
    error = odd[METADATA_COLUMN]["error_t"]
    assert error.startswith("step 't': row 1, column 'instruction': "), error
    assert says in error
    assert len(llm.calls) == 1  # the odd row never reached the model


def test_other_columns_may_hold_numbers_and_lists() -> None:
    task = TextGeneration(
        name="t",
        llm=DescribingLLM(),
        template="{{ instruction }} in {{ year }}: {{ tags | join(', ') }}",
        columns=["instruction", "year", "tags"],
    )
    (row,) = _process(task, [{"instruction": "what", "year": 1969, "tags": ["moon", "apollo"]}])
    assert row["generation"].endswith("user: what in 1969: moon, apollo")


def test_a_very_long_instruction_is_sent_whole() -> None:
    text = "word " * 200_000
    (row,) = _process(TextGeneration(name="t", llm=DescribingLLM()), [{"instruction": text}])
    assert row[METADATA_COLUMN].get("error_t") is None
    assert row["generation"].endswith(text[-100:])


# -- mappings through task.process, as in a pipeline -----------------------------------------


def test_task_process_reads_the_mapped_column_and_keeps_the_shadowed_one() -> None:
    llm = DescribingLLM()
    task = TextGeneration(name="t", llm=llm, input_mappings={"instruction": "question"})
    (row,) = _process(task, [{"question": "Q?", "instruction": "keep me"}])
    assert row["generation"].endswith("user: Q?")
    assert (row["question"], row["instruction"]) == ("Q?", "keep me")
    assert llm.calls == [[{"role": "user", "content": "Q?"}]]


def test_task_process_names_the_dataset_column_of_a_bad_mapped_value() -> None:
    task = TextGeneration(name="t", llm=DescribingLLM(), input_mappings={"instruction": "question"})
    rows = _process(task, [{"question": None}, {"question": 7}, {"instruction": "only this"}])
    errors = [row[METADATA_COLUMN]["error_t"] for row in rows]
    assert errors[0].startswith("step 't': row 0, column 'question': expected text, got None")
    assert errors[1].startswith("step 't': row 1, column 'question': expected text, got int")
    assert errors[2].startswith("step 't': row 2, column 'question': required input column")
    assert rows[2]["instruction"] == "only this"  # kept, and never read as the question


def test_chained_mappings_in_a_pipeline_keep_every_column(tmp_path: Path) -> None:
    data = [{"question": "Q?", "instruction": "keep me", "generation": "old"}]
    with Pipeline(name="chained", cache_dir=tmp_path / "cache") as pipeline:
        first = TextGeneration(
            name="first",
            llm=DescribingLLM(),
            input_mappings={"instruction": "question"},
            output_mappings={"generation": "answer"},
        )
        second = TextGeneration(
            name="second",
            llm=DescribingLLM(),
            input_mappings={"instruction": "answer"},
            output_mappings={"generation": "critique"},
        )
        LoadDataFromDicts(data=data) >> first >> second
    (row,) = pipeline.run(show_progress=False, output_dir=tmp_path / "out")["second"]
    assert (row["question"], row["instruction"], row["generation"]) == ("Q?", "keep me", "old")
    assert row["answer"].endswith("user: Q?")
    assert row["critique"].endswith("user: " + row["answer"])


# -- templates that would exhaust memory or a CPU --------------------------------------------


@pytest.mark.parametrize(
    "template",
    ["{{ 'x' * 10**10 }}", "{{ 10**9 * 'ab' }}", "{{ [0] * 10**9 }}", "{{ 9 ** 99999999 }}"],
)
def test_a_template_cannot_build_something_huge(template: str) -> None:
    start = time.monotonic()
    with pytest.raises(SecurityError, match=r"too large|over the"):
        PromptTemplate(template).render({})
    assert time.monotonic() - start < 2


def test_small_products_still_render() -> None:
    rendered = PromptTemplate("{{ '-' * 3 }} {{ 2 ** 10 }} {{ 3 * 4 }}").render({})
    assert rendered == "--- 1024 12"


def test_a_huge_product_in_a_task_fails_the_row_not_the_process() -> None:
    task = TextGeneration(name="t", llm=DescribingLLM(), template="{{ instruction * 10**9 }}")
    (row,) = _process(task, [{"instruction": "ab"}])
    assert row[METADATA_COLUMN]["error_t"].startswith("step 't': row 0: SecurityError")


# -- config files ----------------------------------------------------------------------------


HEADER = "pixtill_version: '0.1.0'\npipeline:\n  name: hostile\n  steps: []\n  connections: []\n"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_an_integer_of_thousands_of_digits_is_a_config_error(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"digits{suffix}"
    if suffix == ".json":
        path.write_text('{"pipeline": {"name": "x"}, "n": ' + "9" * 5000 + "}")
    else:
        path.write_text(HEADER + "n: " + "9" * 5000 + "\n")
    with pytest.raises(PipelineConfigError, match=r"is not valid: .*digits"):
        Pipeline.from_file(path)


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "!!python/name:os.system ''",
        "!!python/module:os ''",
    ],
)
def test_python_tags_are_refused_and_never_run(tmp_path: Path, tagged: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "tagged.yaml"
    step = (
        "steps:\n    - name: load\n      type: pixtill.steps.LoadDataFromDicts\n"
        f"      params: {{data: {tagged.format(marker=marker)}}}"
    )
    path.write_text(HEADER.replace("steps: []", step))
    with pytest.raises(PipelineConfigError, match="python/"):
        Pipeline.from_file(path)
    assert not marker.exists()


def test_a_row_error_in_a_template_is_a_row_error_type() -> None:
    with pytest.raises(RowError, match="column 'instruction'"):
        PromptTemplate("{{ instruction }}!").render({"instruction": None})


# -- data files a loader cannot read ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("cut.jsonl", '{"instruction": "a"}\n{"instruction": "b"\n', "JSON parse error"),
        ("empty.jsonl", "", "no rows (the files are empty, or no file matches)"),
        ("quote.csv", 'instruction,x\na,1\n"unterminated,3\n', "EOF inside string"),
    ],
)
def test_an_unreadable_data_file_is_named_with_the_parsers_words(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    step = LoadDataFromFileSystem(name="files", data_files=str(path), cache_dir=tmp_path / "hf")
    with pytest.raises(StepConfigError) as caught:
        step.load()
    message = str(caught.value)
    assert message.startswith(f"step 'files': cannot read {name.split('.')[1]} rows from ")
    assert str(path) in message and says in message
    assert "An error occurred while generating the dataset" not in message


def test_a_glob_that_matches_nothing_says_so(tmp_path: Path) -> None:
    step = LoadDataFromFileSystem(name="files", data_files=str(tmp_path / "none-*.jsonl"))
    with pytest.raises(StepConfigError, match="no file matches"):
        step.load()


@pytest.mark.parametrize(
    ("prompt", "got"),
    [("", "an empty string"), ("   ", "an empty string"), (7, "int"), (["a"], "list")],
)
def test_an_image_prompt_that_is_no_text_says_what_it_is(prompt: Any, got: str) -> None:
    task = ImageGeneration(name="paint", image_generation_model=PaletteImageModel())
    task.load()
    try:
        fine, odd = next(task.process([{"prompt": "a cat"}, {"prompt": prompt}]))
    finally:
        task.unload()
    assert fine["image"] is not None and odd["image"] is None
    error = odd[METADATA_COLUMN]["error_paint"]
    assert error == f"step 'paint': row 1, column 'prompt': expected a non-empty string, got {got}"


# -- the same mapping gives the same row through task.process and both pipeline paths -------

ROW = {"instruction": "I", "q": "Q", "generation": "G", "system_prompt": "S"}


def _through(path: str, tmp_path: Path, **mappings: Any) -> dict[str, Any]:
    if path == "task.process":
        (row,) = _process(TextGeneration(name="t", llm=DescribingLLM(), **mappings), [dict(ROW)])
    else:
        with Pipeline(name=f"mapped-{path}", cache_dir=tmp_path / "cache") as pipeline:
            task = TextGeneration(
                name="t", llm=DescribingLLM(), replicas=1 if path == "stream" else 2, **mappings
            )
            LoadDataFromDicts(data=[ROW]) >> task
        (row,) = pipeline.run(show_progress=False, output_dir=tmp_path / f"out-{path}")["t"]
    return {k: v for k, v in row.items() if k not in (METADATA_COLUMN, "model_name")}


@pytest.mark.parametrize("path", ["task.process", "stream", "batch"])
def test_swapped_input_mappings_swap(tmp_path: Path, path: str) -> None:
    row = _through(
        path,
        tmp_path,
        input_mappings={"instruction": "system_prompt", "system_prompt": "instruction"},
    )
    assert row["generation"].endswith("I | user: S")  # system prompt "I", instruction "S"
    assert {k: row[k] for k in ("instruction", "system_prompt", "q")} == {
        "instruction": "I",
        "system_prompt": "S",
        "q": "Q",
    }


@pytest.mark.parametrize("path", ["task.process", "stream", "batch"])
def test_an_output_mapped_onto_the_inputs_own_name_keeps_the_input(
    tmp_path: Path, path: str
) -> None:
    # reads "q" as its instruction and writes the generation to the dataset column
    # "instruction": "q" must keep its value, and "instruction" holds the generation
    row = _through(
        path,
        tmp_path,
        input_mappings={"instruction": "q"},
        output_mappings={"generation": "instruction"},
    )
    assert row["instruction"].endswith("user: Q")
    assert (row["q"], row["generation"], row["system_prompt"]) == ("Q", "G", "S")
