"""hawk generate over many prompts (issue 21): the prompts file, batches, the manifest, resume, torchrun ranks."""
import json
import os
import subprocess
import sys

import pytest

import hawk_kernels as hk
from hawk_kernels import cli
from hawk_kernels.pipelines.batch_job import (MANIFEST, PART, ImageJob, job_groups, read_prompt_file, run_jobs,
                                              written)

PROMPTS = ["digit eight", "the number 3", "a handwritten digit seven"]


def test_prompt_files(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("# a comment\ndigit eight\n\n  the number 3 \n")
    assert read_prompt_file(text, seed=10) == [ImageJob(0, "digit eight", 10), ImageJob(1, "the number 3", 11)]
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"prompt": "digit eight"}\n{"prompt": "the number 3", "seed": 7, "size": "28", "cfg": 1}\n'
                     '{"prompt": "digit one", "size": [28, 28]}\n')
    jobs = read_prompt_file(lines, seed=3)
    assert jobs == [ImageJob(0, "digit eight", 3), ImageJob(1, "the number 3", 7, 28, 1.0),
                    ImageJob(2, "digit one", 5, (28, 28))]
    assert jobs[1].png_name == "001_the-number-3.png"
    for bad, message in (('{"prompt": "x", "seed": -1}', "seed"), ('{"text": "x"}', "prompt"),
                         ('{"prompt": "x", "steps": 3}', "unknown key"), ('{"prompt": "x", "size": "big"}', "size"),
                         ("{not json", "not JSON")):
        lines.write_text(bad + "\n")
        with pytest.raises(ValueError, match=message):
            read_prompt_file(lines)
    # prompts of different size or cfg never share a decoder session
    jobs = [ImageJob(i, "p", i, None, 1.0 if i % 2 else None) for i in range(5)]
    assert [[j.index for j in g] for g in job_groups(jobs)] == [[0, 2, 4], [1, 3]]


@pytest.fixture(scope="module")
def pipe():
    return hk.load_demo_pipeline(device="cpu")


def _pngs(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".png"}


def _manifest(out):
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def stopped_after(images: int, then=None):
    """A stand-in for batch_job.stream_images that hands over its first `images` finished groups, then (when
    asked for the next one) calls `then` and raises KeyboardInterrupt: a run killed while decoding."""
    from hawk_kernels.pipelines.continuous import stream_images

    def stream(*args, **kwargs):
        for handed, item in enumerate(stream_images(*args, **kwargs)):
            if handed == images:
                if then is not None:
                    then()
                raise KeyboardInterrupt
            yield item

    return stream


def test_killed_run_resumes_to_the_uninterrupted_run(pipe, tmp_path, monkeypatch):
    jobs = [ImageJob(i, p, 5 + i) for i, p in enumerate(PROMPTS)]
    kw = dict(mode="jacobi", batch_size=1, num_nodes=16, progress=False)
    run_jobs(pipe, jobs, tmp_path / "full", **kw)
    rows = _manifest(tmp_path / "full")
    assert [r["index"] for r in rows] == [0, 1, 2] and [r["seed"] for r in rows] == [5, 6, 7]
    assert all(r["mode"] == "jacobi" and r["num_nodes"] == 16 and r["passes"] > 0 and r["tokens_per_pass"] >= 1
               and r["png"] == j.png_name and r["compile_seconds"] == 0 for r, j in zip(rows, jobs))  # CPU: eager

    from hawk_kernels.pipelines import batch_job

    monkeypatch.setattr(batch_job, "stream_images", stopped_after(1))  # killed while decoding the second image
    with pytest.raises(KeyboardInterrupt):
        run_jobs(pipe, jobs, tmp_path / "resumed", **kw)
    monkeypatch.undo()
    out = tmp_path / "resumed"
    assert not (out / MANIFEST).exists() and set(written(out)) == {0}
    with open(out / PART.format(0), "ab") as f:  # killed while appending: a torn line
        f.write(b'{"index": 1, "prompt": "the num')
    (out / jobs[2].png_name).write_bytes(b"a PNG without its manifest line is not written")
    made = run_jobs(pipe, jobs, out, **kw)
    assert [p.name for p in made] == [jobs[1].png_name, jobs[2].png_name]  # image 0 is not made twice
    assert _pngs(out) == _pngs(tmp_path / "full")
    assert [r["index"] for r in _manifest(out)] == [0, 1, 2] and not list(out.glob("manifest.part-*"))
    assert run_jobs(pipe, jobs, out, **kw) == []  # nothing left to do


def test_a_batch_is_written_while_the_next_one_decodes(pipe, tmp_path, monkeypatch):
    """A batch's PNGs (CPU work: ~0.1-0.2 s per 768 px image) are written on a thread of their own while the next
    batch decodes: here the first PNG's write waits until the second batch has started decoding, which would wait
    forever written in line. Ctrl-C during the second batch still leaves the first batch written, line included."""
    import threading

    from hawk_kernels.pipelines import batch_job

    jobs = [ImageJob(i, p, 5 + i) for i, p in enumerate(PROMPTS)]
    second_started, save = threading.Event(), batch_job.save_image

    def save_after_the_second_batch_started(image, path, **kwargs):
        assert second_started.wait(timeout=30), "the first batch's PNG was written before the second batch began"
        save(image, path, **kwargs)

    monkeypatch.setattr(batch_job, "stream_images", stopped_after(1, then=second_started.set))
    monkeypatch.setattr(batch_job, "save_image", save_after_the_second_batch_started)
    with pytest.raises(KeyboardInterrupt):
        run_jobs(pipe, jobs, tmp_path, mode="ar", batch_size=1, num_nodes=1, progress=False)
    assert set(written(tmp_path)) == {0} and (tmp_path / jobs[0].png_name).exists()


def test_a_write_that_fails_on_the_writer_thread_stops_the_run(pipe, tmp_path, monkeypatch):
    """A write that fails on the writer thread (a full disk) raises out of run_jobs as before (OSError naming
    --out), at the latest one batch later; nothing after it counts as written."""
    from hawk_kernels.pipelines import batch_job

    jobs = [ImageJob(i, p, 5 + i) for i, p in enumerate(PROMPTS)]

    def full_disk(image, path, **kwargs):
        raise OSError(f"--out: could not write {str(path)!r} (No space left on device)")

    monkeypatch.setattr(batch_job, "save_image", full_disk)
    with pytest.raises(OSError, match="--out: could not write .*No space left"):
        run_jobs(pipe, jobs, tmp_path, mode="ar", batch_size=1, num_nodes=1, progress=False)
    assert not set(written(tmp_path))


def test_a_short_group_is_filled_where_the_step_compiles(pipe, tmp_path, monkeypatch):
    """A compiled step compiles once per batch size (and "auto" times its tree sizes once per batch size), so where
    the step compiles a group of fewer images than the batch size still runs batch-size rows, the extra ones
    repeats of its last image, decoded and dropped. On the CPU with compile "auto" nothing is filled."""
    jobs = [ImageJob(i, p, 5 + i) for i, p in enumerate(PROMPTS)]
    sessions, start = [], hk.HawkDecoder.start

    def recording(self, input_ids, *args, **kwargs):
        sessions.append((input_ids.shape[0], list(kwargs["seed"])))
        return start(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(hk.HawkDecoder, "start", recording)
    kw = dict(mode="ar", batch_size=4, num_nodes=1, progress=False)
    run_jobs(pipe, jobs, tmp_path / "filled", fill_batches=True, **kw)
    assert sessions == [(4, [5, 6, 7, 7])]
    rows = _manifest(tmp_path / "filled")
    assert [(r["index"], r["seed"]) for r in rows] == [(0, 5), (1, 6), (2, 7)] and len(_pngs(tmp_path / "filled")) == 3
    sessions.clear()
    run_jobs(pipe, jobs, tmp_path / "as_is", **kw)  # fill_batches=None: the pipeline's compile word on the CPU
    assert sessions == [(3, [5, 6, 7])] and pipe.compile == "auto"
    assert _pngs(tmp_path / "as_is") == _pngs(tmp_path / "filled")


def test_finished_rows_take_the_next_images(pipe, tmp_path, monkeypatch):
    """Continuous batching in a many-image run: 3 jacobi images through a session of 2 rows: the third image starts
    in the row that finished first (one session, one refill), and every PNG equals the one made in a session of
    its own (batch size 1)."""
    jobs = [ImageJob(i, p, 5 + i) for i, p in enumerate(PROMPTS)]
    refills, refill = [], hk.HawkDecoder.refill

    def recording(self, session, rows, *args, **kwargs):
        refills.append((list(rows), list(kwargs["seed"])))
        return refill(self, session, rows, *args, **kwargs)

    monkeypatch.setattr(hk.HawkDecoder, "refill", recording)
    run_jobs(pipe, jobs, tmp_path / "two", mode="jacobi", batch_size=2, num_nodes=8, progress=False)
    assert len(refills) == 1 and refills[0][1] == [7]
    run_jobs(pipe, jobs, tmp_path / "one", mode="jacobi", batch_size=1, num_nodes=8, progress=False)
    assert _pngs(tmp_path / "two") == _pngs(tmp_path / "one")
    assert [r["index"] for r in _manifest(tmp_path / "two")] == [0, 1, 2]


@pytest.mark.slow
def test_torchrun_two_ranks_killed_and_resumed_equal_one_process(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    args = ["generate", "--demo", "--prompts", str(prompts), "--seed", "5", "--mode", "jacobi", "--nodes", "16",
            "--threads", "1"]
    assert cli.main(args + ["--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hawk_kernels"]
    two = tmp_path / "two"
    _run(torchrun + args + ["--out", str(two), "--max-images", "1"], env)  # stops after images 0 (rank 0), 1 (rank 1)
    assert [r["index"] for r in _manifest(two)] == [0, 1]
    _run(torchrun + args + ["--out", str(two)], env)
    assert _pngs(two) == _pngs(tmp_path / "one") and len(_pngs(two)) == 3
    timings = ("seconds", "compile_seconds")
    strip = [{k: v for k, v in r.items() if k not in timings} for r in _manifest(two)]
    assert strip == [{k: v for k, v in r.items() if k not in timings} for r in _manifest(tmp_path / "one")]


def _run(command, env):
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_each_png_carries_its_settings_and_the_same_image_is_the_same_file(tmp_path, capsys):
    """A PNG of `hawk generate` holds its manifest line (less the timings) as text, and the "parameters" line image
    browsers read, so an image found alone still says how to make it again; without the timings, making the same
    image twice gives the same bytes."""
    from PIL import Image

    from hawk_kernels.pipelines.writer import RUN_FIELDS, png_text, save_image

    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert cli.main(["generate", "--demo", "--prompt", "digit eight", "--out", str(out), "--seed", "4",
                         "--mode", "hawk", "--nodes", "4", "--threads", "1"]) == 0
    capsys.readouterr()
    line = json.loads((outs[0] / MANIFEST).read_text())
    png = outs[0] / line["png"]
    with Image.open(png) as image:
        recorded = json.loads(image.text["hawk_kernels"])
        parameters = image.text["parameters"]
    assert recorded == {key: value for key, value in line.items() if key not in RUN_FIELDS}
    assert set(RUN_FIELDS) - {"tree_rates"} <= set(line) and recorded["heads"] and recorded["model"]  # (--nodes 4)
    assert parameters.startswith("digit eight\nSeed: 4, Mode: hawk, Nodes: 4, "), parameters
    assert f"Model hash: {line['model']}" in parameters
    assert png.read_bytes() == (outs[1] / line["png"]).read_bytes()
    # text beyond Latin-1 (an iTXt chunk) and a negative prompt, read back as written
    text = png_text(dict(prompt="un renard roux, 赤い狐", negative_prompt="flou", seed=1, seconds=2.5))
    with Image.open(png) as image:
        save_image(image, tmp_path / "x.png", text=text)
    with Image.open(tmp_path / "x.png") as image:
        assert image.text["parameters"] == "un renard roux, 赤い狐\nNegative prompt: flou\nSeed: 1"
        assert json.loads(image.text["hawk_kernels"]) == dict(prompt="un renard roux, 赤い狐", negative_prompt="flou",
                                                              seed=1)
