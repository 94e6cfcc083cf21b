"""Every reader of a file the suite did not write in this process, fuzzed with mutated bytes.

One parametrised harness: each entry of READERS gives a valid fixture in the real format and the
function that loads it. ``hypothesis`` flips, deletes, inserts and truncates bytes of the fixture;
the reader must either load it or raise the suite's own error (DpsBenchError, which the command
line prints as one message), with no other exception, within a deadline and without a large
allocation. A reader added later (the CIFAR, WebNLG and JSONL readers of the coming scenarios)
joins by adding an entry here.
"""

from __future__ import annotations

import io
import json
import signal
import tarfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.data.chat_jsonl import read_chat_jsonl
from benchmarks.data.choice_tasks import read_arc, read_hellaswag, read_lmeval_mmlu, read_mmlu
from benchmarks.data.cifar10 import decode_folder, read_batch, read_decoded_cache
from benchmarks.data.cifar10n import read_labels
from benchmarks.data.idx import read_idx, write_idx
from benchmarks.data.mnist1d import read_cache
from benchmarks.data.tokenize import read_tokenizer, train_tokenizer
from benchmarks.data.webnlg import load_webnlg, read_webnlg_xml
from benchmarks.errors import DpsBenchError
from benchmarks.reproduce import load_reference
from benchmarks.store import CURVE_COLUMNS, RUN_COLUMNS, Store, read_curves_csv, read_record, read_runs_csv
from benchmarks.tuned import load_tuned, tuned_path

MAX_BYTES = 64 << 20  # a reader may not allocate this much on a fixture of a few KB


def _hang(signum, frame):
    raise AssertionError("the reader hung on a mutated file (no result after 10 s)")


@dataclass
class Reader:
    name: str
    file_name: str
    fixture: Callable[[Path], bytes]  # valid bytes in the real format
    load: Callable[[Path], object]  # loads the file at the path (or raises DpsBenchError)


def _idx_bytes(tmp: Path, compress: bool) -> bytes:
    path = tmp / "fixture.idx"
    write_idx(path, np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4), compress=compress)
    return path.read_bytes()


def _reference_bytes(tmp: Path) -> bytes:
    return (b"scenario: balancing\nsource: mnist1d\nprofile: quick\nmethods: [train_only, bads]\n"
            b"seeds: [0, 1, 2]\nout: balancing/mnist1d-quick\nset:\n  meta_per_class: 25\n")


TUNED_ARGS = ("balancing", "mnist1d", "quick", {}, "bads")


def _tuned_bytes(tmp: Path) -> bytes:
    return (b"scenario: balancing\nsource: mnist1d\nprofile: quick\nsettings: {}\nmethod: bads\n"
            b"tuned:\n  lr_w: 0.001\n  sigma: 1.0e-05\nfixed: {}\nval_score: 0.61\n"
            b"budget: 8\ntrials: []\ncommand: dps-bench tune\n")


def _load_tuned(path: Path):
    target = tuned_path(path.parent, *TUNED_ARGS)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    return load_tuned(path.parent, *TUNED_ARGS[:4], TUNED_ARGS[4], {})


def _run_row(run_id: str = "0123456789abcdef") -> dict:
    return {c: "" for c in RUN_COLUMNS} | {
        "run_id": run_id, "method": "bads", "seed": 0, "status": "ok", "final_metric": 0.5,
        "config_json": json.dumps({"method": "bads", "seed": 0})}


def _runs_bytes(tmp: Path) -> bytes:
    return pd.DataFrame([_run_row(), _run_row("fedcba9876543210")]).to_csv(index=False).encode()


def _curves_bytes(tmp: Path) -> bytes:
    frame = pd.DataFrame([("0123456789abcdef", s, "test", "accuracy", 0.1 * s) for s in (1, 2, 3)],
                         columns=CURVE_COLUMNS)
    return frame.to_csv(index=False).encode()


def _record_bytes(tmp: Path) -> bytes:
    return json.dumps({"format": 1, "row": _run_row(), "weights_sha256": None,
                       "curves": {"step": [1, 2], "split": ["test", "test"],
                                  "metric_name": ["accuracy"] * 2, "value": [0.1, 0.2]}}).encode()


def _weights_bytes(tmp: Path) -> bytes:
    return b"index,weight,group\n0,0.5,majority\n1,0.9,minority\n"


def _mnist1d_cache_bytes(tmp: Path) -> bytes:
    path = tmp / "cache.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(6, 40)), y=np.arange(6) % 10,
             x_test=rng.normal(size=(3, 40)), y_test=np.arange(3))
    return path.read_bytes()


def _load_mnist1d_cache(path: Path):
    """A damaged cache must read as None (it is then generated again), never raise."""
    arrays = read_cache(path)
    return "regenerate" if arrays is None else arrays


def _load_store_record(path: Path):
    """A whole store whose one record is the fuzzed file: opening it either serves the views or
    raises StoreError."""
    store = path.parent / "store"
    (store / "records").mkdir(parents=True, exist_ok=True)
    (store / "records" / path.name).write_bytes(path.read_bytes())
    return Store(store).runs()


def _load_weights(path: Path):
    target = path.parent / "store" / "weights" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    return Store(path.parent / "store").weights(path.stem)


def _cifar_batch_bytes(tmp: Path) -> bytes:
    from cifar_fixtures import batch_bytes

    return batch_bytes(np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3, 32, 32) % 251, [3, 7])


def _cifar10n_bytes(tmp: Path) -> bytes:
    from cifar_fixtures import write_cifar10n

    return write_cifar10n(tmp, np.arange(8) % 10, {"worse_label": np.arange(8)[::-1] % 10}).read_bytes()


def _image_archive_bytes(tmp: Path) -> bytes:
    from cifar_fixtures import image_set, write_image_folder

    files = {k: v for k, v in image_set(per_class=1).items() if "/cat/" in k}  # train and test
    return write_image_folder(tmp / "images", files, archive=True).read_bytes()


def _image_tar_bytes(tmp: Path) -> bytes:
    """The same layout as a plain tar, so that mutations reach the image decoder."""
    import gzip

    return gzip.decompress(_image_archive_bytes(tmp))


def _image_cache_bytes(tmp: Path) -> bytes:
    path = tmp / "images.npz"
    np.savez(path, train_x=np.zeros((2, 32, 32, 3), np.uint8), train_y=np.array([0, 1]),
             test_x=np.zeros((1, 32, 32, 3), np.uint8), test_y=np.array([1]))
    return path.read_bytes()


def _load_image_cache(path: Path):
    """A damaged decoded-image cache must read as None (decoded again), never raise."""
    arrays = read_decoded_cache(path)
    return "decode again" if arrays is None else arrays


def _webnlg_xml_bytes(tmp: Path) -> bytes:
    """One file of the enriched WebNLG 2017 corpus (v2.0): two entries, tags a reader ignores."""
    def entry(eid: str, triples: list[str], texts: list[str]) -> str:
        lexes = "".join(f'<lex comment="good" lid="Id{i}"><tree/><sortedtripleset/><references/>'
                        f"<text>{t}</text><template>AGENT-1 is here .</template><tree>(S)</tree></lex>"
                        for i, t in enumerate(texts, 1))
        mtriples = "".join(f"<mtriple>{t}</mtriple>" for t in triples)
        return (f'<entry category="Astronaut" eid="{eid}" size="{len(triples)}"><originaltripleset>'
                f"<otriple>{triples[0]}</otriple></originaltripleset><modifiedtripleset>{mtriples}"
                f"</modifiedtripleset>{lexes}<entitymap><entity>AGENT-1 | X</entity></entitymap></entry>")

    return ('<?xml version="1.0" ?>\n<benchmark><entries>'
            + entry("Id1", ["Alan_Bean | birthDate | &quot;1932-03-15&quot;",
                            "Alan_Bean | occupation | Test_pilot"],
                    ["Alan Bean, born on 1932-03-15, was a test pilot.", "Alan Bean flew."])
            + entry("Id2", ["Buzz_Aldrin | mission | Apollo_11"], ["Buzz Aldrin flew on Apollo 11."])
            + "</entries></benchmark>\n").encode()


def _load_webnlg_xml(path: Path):
    return read_webnlg_xml(path.read_bytes(), "train", str(path))


def _webnlg_tar_bytes(tmp: Path, compress: bool = True) -> bytes:
    """A whole (tiny) corpus in the layout of webnlg-en-v2.0.tar.gz: one file per split."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w") as tar:
        for rel in ("train/2triples/Astronaut.xml", "dev/2triples/Astronaut.xml",
                    "test/2triples/Astronaut.xml"):
            data = _webnlg_xml_bytes(tmp)
            info = tarfile.TarInfo(f"webnlg-en-v2.0/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tokenizer_bytes(tmp: Path) -> bytes:
    """A trained tokenizer.json (byte-level BPE) as the efficient scenario caches it."""
    return train_tokenizer(["Alan Bean was born in 1932.", "<H> Alan Bean <R> birth <T> 1932"],
                           270).to_str().encode()


def _load_webnlg_tar(path: Path):
    """The fuzzed file is the data directory's corpus (its MD5 check off: it is a fixture)."""
    return load_webnlg(path, check_md5=False)


def _chat_jsonl_bytes(tmp: Path, compress: bool = False) -> bytes:
    """Three lines of a LESS / Tülu chat mixture (one blank, one without ``dataset``)."""
    import gzip

    lines = [{"dataset": "flan_v2", "id": "flan_v2_0", "messages": [
                 {"role": "user", "content": "Translate to French: cat"},
                 {"role": "assistant", "content": "chat"}]},
             {"dataset": "oasst1", "id": "oasst1_3", "messages": [
                 {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                 {"role": "assistant", "content": "Hello — bonjour!"}]},
             {"id": "x", "messages": [{"role": "user", "content": "2+2?"},
                                      {"role": "assistant", "content": "4"}]}]
    data = "\n".join(json.dumps(obj, ensure_ascii=False) for obj in lines[:2]) + "\n\n"
    data = (data + json.dumps(lines[2]) + "\n").encode()
    return gzip.compress(data, mtime=0) if compress else data


def _mmlu_csv_bytes(tmp: Path) -> bytes:
    """An MMLU test file: no header, ``question,A,B,C,D,letter``, a quoted multi-line field."""
    return (b'Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.,0,1,2,3,B\n'
            b'"Statement 1 | Every element generates a cyclic subgroup.\nStatement 2 | S_10 has 10 '
            b'elements.","True, True","False, False","True, False","False, True",C\n')


def _load_mmlu(path: Path):
    """The fuzzed file is the one subject of ``data/test/`` of an MMLU folder."""
    target = path.parent / "mmlu" / "data" / "test" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    return read_mmlu(path.parent / "mmlu", "test")


def _arc_jsonl_bytes(tmp: Path) -> bytes:
    """Two ARC-Challenge questions as released: letter and digit labels, 4 and 5 choices."""
    def line(qid: str, stem: str, labels: str, texts: list[str], key: str) -> str:
        return json.dumps({"id": qid, "question": {"stem": stem, "choices": [
            {"text": t, "label": lab} for lab, t in zip(labels, texts, strict=True)]}, "answerKey": key})

    return (line("Mercury_7175875", "Which tool measures mass?", "ABCDE",
                 ["ruler", "balance", "thermometer", "graduated cylinder", "clock"], "B") + "\n"
            + line("NYSEDREGENTS_2015_4_8", "Which is a mammal?", "1234",
                   ["frog", "whale", "shark", "eel"], "2") + "\n").encode()


def _hellaswag_bytes(tmp: Path) -> bytes:
    """One line of hellaswag_val.jsonl with all its released fields."""
    return (json.dumps({"ind": 24, "activity_label": "Removing ice from car",
                        "ctx_a": "Then, the man writes over the snow covering the window of a car.",
                        "ctx_b": "then", "ctx": "Then, the man writes over the snow covering the "
                        "window of a car. then", "split": "val", "split_type": "indomain", "label": 3,
                        "endings": [", the man adds wax.", ", a person boards a ski lift.",
                                    ", the man puts on a coat.", ", the man removes the snow."],
                        "source_id": "activitynet~v_-1IBHYS3L-Y"}) + "\n").encode()


def _lmeval_yaml_bytes(tmp: Path) -> bytes:
    """An lm-eval ``tasks/mmlu/flan_cot_fewshot/mmlu_<subject>.yaml`` with two few-shot samples."""
    return (b"dataset_name: college_physics\n"
            b"description: The following are multiple choice questions (with answers) about college\n"
            b"  physics.\n"
            b"fewshot_config:\n  sampler: first_n\n  samples:\n"
            b"  - question: 'A refracting telescope consists of two converging lenses separated by\n"
            b"      100 cm. The angular magnification of the telescope is\n\n"
            b"      (A) 4 (B) 5 (C) 6 (D) 20'\n"
            b"    target: Let's think step by step. The focus of both lenses must be between the\n"
            b"      two lenses. The answer is (A).\n"
            b"  - question: 'Which is larger?\n\n      (A) 1 (B) 2 (C) 3 (D) 4'\n"
            b'    target: "Let\'s think step by step. Four. The answer is (D).\\n\\n"\n'
            b"tag: mmlu_flan_cot_fewshot_stem\ninclude: _mmlu_flan_cot_fewshot_template_yaml\n"
            b"task: mmlu_flan_cot_fewshot_college_physics\n")


def _load_lmeval(path: Path):
    return read_lmeval_mmlu(path.parent)


READERS = [
    Reader("idx-gzip", "train-labels-idx1-ubyte.gz", lambda t: _idx_bytes(t, True), read_idx),
    Reader("idx-raw", "train-labels-idx1-ubyte", lambda t: _idx_bytes(t, False), read_idx),
    Reader("reference-yaml", "balancing-mnist1d-quick.yaml", _reference_bytes, load_reference),
    Reader("tuned-yaml", "fuzzed.yaml", _tuned_bytes, _load_tuned),
    Reader("runs-csv", "runs.csv", _runs_bytes, read_runs_csv),
    Reader("curves-csv", "curves.csv", _curves_bytes, read_curves_csv),
    Reader("run-record", "0123456789abcdef.json", _record_bytes, read_record),
    Reader("weights-csv", "0123456789abcdef.csv", _weights_bytes, _load_weights),
    Reader("mnist1d-cache", "mnist1d-n70000-s42.npz", _mnist1d_cache_bytes, _load_mnist1d_cache),
    Reader("store-with-record", "0123456789abcdef.json", _record_bytes, _load_store_record),
    Reader("cifar10-batch", "data_batch_1", _cifar_batch_bytes, read_batch),
    Reader("cifar10n-labels", "CIFAR-10_human.pt", _cifar10n_bytes, read_labels),
    Reader("cifar10-image-archive", "cifar-10-images.tar.gz", _image_archive_bytes, decode_folder),
    Reader("cifar10-image-tar", "cifar-10-images.tar", _image_tar_bytes, decode_folder),
    Reader("cifar10-image-cache", "cifar10-images-0123.npz", _image_cache_bytes, _load_image_cache),
    Reader("webnlg-xml", "Astronaut.xml", _webnlg_xml_bytes, _load_webnlg_xml),
    Reader("webnlg-tar-gz", "webnlg-en-v2.0.tar.gz", _webnlg_tar_bytes, _load_webnlg_tar),
    Reader("webnlg-tar", "webnlg-en-v2.0.tar", lambda t: _webnlg_tar_bytes(t, False), _load_webnlg_tar),
    Reader("tokenizer-json", "tokenizer.json", _tokenizer_bytes, read_tokenizer),
    Reader("chat-jsonl", "tulu_mix.jsonl", _chat_jsonl_bytes, read_chat_jsonl),
    Reader("chat-jsonl-gz", "flan_v2_data.jsonl.gz", lambda t: _chat_jsonl_bytes(t, True), read_chat_jsonl),
    Reader("mmlu-csv", "abstract_algebra_test.csv", _mmlu_csv_bytes, _load_mmlu),
    Reader("arc-jsonl", "ARC-Challenge-Dev.jsonl", _arc_jsonl_bytes,
           lambda p: read_arc(p, "challenge", "dev")),
    Reader("hellaswag-jsonl", "hellaswag_val.jsonl", _hellaswag_bytes, read_hellaswag),
    Reader("lmeval-mmlu-yaml", "mmlu_college_physics.yaml", _lmeval_yaml_bytes, _load_lmeval),
]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, at, arg in ops:
        at = at % (len(buf) + 1)
        if op == "flip" and buf:
            buf[at % len(buf)] ^= arg
        elif op == "delete":
            del buf[at:at + arg]
        elif op == "insert":
            buf[at:at] = arg
        elif op == "truncate":
            del buf[at:]
    return bytes(buf)


@pytest.mark.parametrize("reader", READERS, ids=[r.name for r in READERS])
def test_reader_loads_its_valid_fixture(reader, tmp_path):
    path = tmp_path / reader.file_name
    path.write_bytes(reader.fixture(tmp_path))
    assert reader.load(path) is not None


@pytest.mark.parametrize("reader", READERS, ids=[r.name for r in READERS])
def test_reader_survives_mutated_bytes(reader, tmp_path_factory):
    base = tmp_path_factory.mktemp(reader.name)
    valid = reader.fixture(base)

    @settings(max_examples=150, deadline=2000, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(ops=st.lists(mutation, min_size=1, max_size=4))
    def check(ops):
        folder = base / "case"
        folder.mkdir(exist_ok=True)
        for old in folder.rglob("*"):
            if old.is_file():
                old.unlink()
        path = folder / reader.file_name
        path.write_bytes(mutate(valid, ops))
        tracemalloc.start()
        signal.signal(signal.SIGALRM, _hang)
        signal.alarm(10)  # hypothesis's deadline is checked only once the call returns
        try:
            reader.load(path)
        except DpsBenchError:
            pass
        finally:
            signal.alarm(0)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < MAX_BYTES, f"{reader.name} allocated {peak >> 20} MiB on a tiny file"

    check()
