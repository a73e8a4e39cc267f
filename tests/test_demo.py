"""`pixtill demo` end to end on the tiny offline models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from local_models import TinyModels, offline, tiny_models
from pixtill import demo, demo_quality

pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline, tiny_models)  # imported for pytest; named here so linters see them used


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_demo_runs_end_to_end(
    tiny_models: TinyModels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import datasets

    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tiny_models.cache))  # the prebuilt tiny models
    output = tmp_path / "out"
    assert demo.run(parse("--output", str(output), "--rows", "3")) == 0
    printed = capsys.readouterr().out

    sample_images = sorted(p.name for p in (output / "sample-images").glob("*.*"))
    assert len(sample_images) == 4  # three images and their metadata.jsonl
    dataset = datasets.load_from_disk(str(output / "dataset" / demo.LEAF))
    assert len(dataset) == 3
    assert isinstance(dataset.features["image"], datasets.Image)
    assert isinstance(dataset.features["generated_image"], datasets.Image)
    for row in dataset:
        assert row["image"].size[1] == 96
        assert row["generated_image"].size == (64, 64)
        assert isinstance(row["caption"], str) and isinstance(row["answer"], str)
        assert row["question"].startswith(f"What colour is the {row['shape']}")
        assert row["caption_model"] == str(tiny_models.vlm)
        assert row["image_model"] == str(tiny_models.text_to_image)
        assert row["image_prompt"]
    assert len({row["path"] for row in dataset}) == 3
    parquet = datasets.Dataset.from_parquet(str(output / "parquet" / demo.LEAF / "data.parquet"))
    assert isinstance(parquet.features["generated_image"], datasets.Image)
    assert parquet[0]["generated_image"].size == (64, 64)

    assert "RANDOM weights" in printed
    assert "gibberish" in printed and "noise" in printed
    assert str(output / "dataset") in printed
    assert "Distiset.load_from_disk" in printed and "datasets.load_from_disk" in printed
    assert "rows:            3" in printed
    assert f"pixtill view {output / 'dataset'}" in printed
    leaves_line = next(line for line in printed.splitlines() if "a folder per leaf" in line)
    assert "quality_kept" in leaves_line and "quality_dropped" in leaves_line
    assert not (output / ".pipeline" / "data").exists()  # the dataset is written once

    # The quality branch: real OCR of the drawn documents, the judge, dedup and three gates.
    kept = datasets.load_from_disk(str(output / "dataset" / demo_quality.KEPT_LEAF))
    dropped = datasets.load_from_disk(str(output / "dataset" / demo_quality.DROPPED_LEAF))
    assert len(kept) + len(dropped) == len(demo_quality.DOCUMENTS) + len(demo_quality.COPIES)
    assert sorted(kept["path"]) == [
        "invoice.png",
        "label.png",
        "parking-sign.png",
        "receipt.png",
        "shop-sign.png",
    ]
    reasons = dict(zip(dropped["path"], dropped["drop_reason"]))
    assert reasons["shop-sign_copy.jpg"].startswith("unique: not is_duplicate")
    assert reasons["label_small.png"].startswith("unique: not is_duplicate")
    assert reasons["bakery-sign.png"] == "text_matches: text_fidelity >= 0.9 (text_fidelity=0.8333)"
    assert reasons["exit-sign.png"].startswith("text_matches: text_fidelity >= 0.9")
    assert reasons["poster.png"].startswith("legible: judge_score >= 3")
    read = {row["path"]: row["ocr_text"] for row in [*kept, *dropped]}
    assert read["parking-sign.png"] == "NO PARKING"
    assert read["bakery-sign.png"] == "BAKFRY"  # what is drawn, not what was asked for
    assert all(isinstance(s, dict) for s in kept["judge_scores"])
    words = " ".join(printed.split())
    assert "unique 8 of 10 passed" in words
    assert "text_matches 6 of 8 passed" in words
    assert "legible 5 of 6 passed" in words
    assert "'NO PARKING'" in printed and "not a vision-language model" in printed


def test_arguments_and_defaults() -> None:
    args = parse()
    assert args.output == Path("pixtill-output/demo")
    assert args.rows == 6 and args.vlm is None and args.image_model is None
    assert not args.no_progress
    args = parse("--vlm", "org/vlm", "--image-model", "some/folder", "--no-progress")
    assert (args.vlm, args.image_model, args.no_progress) == ("org/vlm", "some/folder", True)
    for bad in ("0", "-2", "many"):
        with pytest.raises(SystemExit):
            parse("--rows", bad)


def test_help_from_python_m(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    assert "--image-model" in capsys.readouterr().out


def test_sample_images_are_distinct_and_replaced_on_rerun(tmp_path: Path) -> None:
    records = demo.write_sample_images(tmp_path, 8)
    assert len({(r["shape"], r["colour"]) for r in records}) == 8
    assert {r["shape"] for r in records} == set(demo.SHAPES)
    assert {r["colour"] for r in records} == set(demo.COLOURS)
    demo.write_sample_images(tmp_path, 2)
    assert len(list(tmp_path.glob("*.png")) + list(tmp_path.glob("*.jpg"))) == 2
    lines = (tmp_path / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(line)["file_name"] for line in lines] == [
        r["file_name"] for r in records[:2]
    ]


def test_image_prompt_falls_back_when_the_caption_is_empty() -> None:
    step = demo.ImagePrompt(name="prompt")
    (rows,) = step.process_applying_mappings(
        [
            {"caption": "a shiny red ball", "shape": "circle", "colour": "red"},
            {"caption": "   ", "shape": "square", "colour": "blue"},
            {"caption": None, "shape": "pentagon", "colour": "green"},
        ]
    )
    assert [(r["image_prompt"], r["prompt_source"]) for r in rows] == [
        ("a shiny red ball", "caption"),
        ("a blue square", "fallback"),
        ("a green pentagon", "fallback"),
    ]


def test_documents_are_drawn_with_their_expected_text(tmp_path: Path) -> None:
    records = demo_quality.write_documents(tmp_path)
    assert len(records) == len(demo_quality.DOCUMENTS) + len(demo_quality.COPIES)
    assert all(r["prompt"].endswith(f'"{r["expected_text"]}"') for r in records)
    assert {p.name for p in tmp_path.iterdir()} == {r["file_name"] for r in records} | {
        "metadata.jsonl"
    }


def test_the_offline_judge_answers_in_the_schema_and_refuses_free_text() -> None:
    from pixtill.images import ImageRef
    from pixtill.models.structured import StructuredOutputNotSupportedError, parse_structured
    from pixtill.steps.quality import Criterion, Rubric, verdict_schema

    rubric = Rubric(
        name="legibility",
        instructions="rate",
        criteria=[
            Criterion(name="contrast", description="c"),
            Criterion(name="sharpness", description="s"),
        ],
    )
    schema = verdict_schema(rubric)
    judge = demo_quality.ContrastJudgeLLM()
    sharp = demo_quality.draw_document("HELLO", "black", "white")
    faint = demo_quality.draw_document("HELLO", "#909090", "#969696")

    def ask(image: object) -> dict[str, object]:
        chat = [
            {"role": "user", "content": [{"type": "image", "image": ImageRef.from_value(image)}]}
        ]
        (output,) = judge.generate([chat], structured_output=schema)
        verdict = parse_structured(output["generations"][0], schema)
        assert isinstance(verdict, dict)
        return verdict

    assert ask(sharp)["contrast"] > ask(faint)["contrast"] == 1
    with pytest.raises(StructuredOutputNotSupportedError):
        judge.generate([[{"role": "user", "content": "hi"}]])


def test_the_demo_without_progress_prints_no_bars(
    tiny_models: TinyModels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tiny_models.cache))
    output = tmp_path / "out"
    assert demo.run(parse("--output", str(output), "--rows", "2", "--no-progress")) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "━━━" not in printed and "rows in" not in printed
    assert "pixtill demo: done" in printed
