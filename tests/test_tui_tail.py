"""The file poller on its own: real files in tmp_path, no Textual."""

import os

from tui.tail import FileTail


def append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_a_missing_file_is_waited_for(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    tail = FileTail(path)
    first = tail.poll()
    assert not first.exists and first.lines == [] and not first.reset and first.error is None
    path.parent.mkdir()
    append(path, '{"event": "run_start"}\n')
    later = tail.poll()
    assert later.exists and later.lines == ['{"event": "run_start"}'] and not later.reset


def test_a_growing_file_yields_each_line_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, "a\nb\n")
    tail = FileTail(path)
    assert tail.poll().lines == ["a", "b"]
    assert tail.poll().lines == []
    append(path, "c\n")
    assert tail.poll().lines == ["c"]


def test_a_partial_last_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, 'one\n{"event": "st')
    tail = FileTail(path)
    assert tail.poll().lines == ["one"]
    assert tail.pending_bytes == len('{"event": "st')
    append(path, 'ep"}')
    assert tail.poll().lines == []
    append(path, "\ntwo\n")
    assert tail.poll().lines == ['{"event": "step"}', "two"]
    assert tail.pending_bytes == 0


def test_a_truncated_file_starts_over(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, "old 1\nold 2\n")
    tail = FileTail(path)
    tail.poll()
    path.write_text("new\n", encoding="utf-8")  # same inode, shorter
    got = tail.poll()
    assert got.reset and got.lines == ["new"]


def test_a_rewrite_that_grew_past_the_offset_is_noticed(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, "first run\n")
    tail = FileTail(path)
    tail.poll()
    path.write_text("second run, longer than the first\nmore\n", encoding="utf-8")  # same inode, larger
    got = tail.poll()
    assert got.reset and got.lines == ["second run, longer than the first", "more"]


def test_a_cut_back_then_appended_past_the_offset_is_noticed(tmp_path):
    """A resume cuts metrics.jsonl back in place to its checkpoint, then appends: between two polls
    the file can be longer again, with the same inode and start. The bytes before our offset tell."""
    path = tmp_path / "metrics.jsonl"
    head = '{"event": "run_start"}\n' + "".join(f'{{"event": "step", "step": {i}}}\n' for i in range(1, 21))
    append(path, head)
    tail = FileTail(path)
    tail.poll()
    kept = head[: head.index('{"event": "step", "step": 11}')]
    with open(path, "r+", encoding="utf-8") as f:
        f.truncate(len(kept.encode()))
    resumed = '{"event": "resume", "step": 10}\n' + "".join(f'{{"event": "step", "step": {i}}}\n' for i in range(11, 25))
    append(path, resumed)
    assert path.stat().st_size > len(head.encode())  # no poll could see it shorter
    got = tail.poll()
    assert got.reset and got.lines == (kept + resumed).splitlines()


def test_a_replaced_file_starts_over(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, "old\n")
    tail = FileTail(path)
    tail.poll()
    other = tmp_path / "new.jsonl"
    other.write_text("old\nnew run\n", encoding="utf-8")  # a new inode; even the same first line
    os.replace(other, path)
    got = tail.poll()
    assert got.reset and got.lines == ["old", "new run"]


def test_a_deleted_then_recreated_file_starts_over(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, "old\n")
    os.link(path, tmp_path / "old.link")  # holds the old inode, so the new file cannot reuse it
    tail = FileTail(path)
    tail.poll()
    path.unlink()
    assert not tail.poll().exists
    append(path, "new\n")
    got = tail.poll()
    assert got.reset and got.lines == ["new"]


def test_a_big_file_comes_in_bounded_batches(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [f'{{"event": "step", "step": {i}}}' for i in range(2000)]
    append(path, "\n".join(lines) + "\n")
    tail = FileTail(path, max_bytes=4096, chunk_bytes=1000)
    got, polls = [], 0
    while True:
        result = tail.poll()
        polls += 1
        got += result.lines
        if not result.more:
            break
    assert got == lines
    assert polls > 5


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"ok\n\xff\xfe broken\n")
    assert FileTail(path).poll().lines == ["ok", "\ufffd\ufffd broken"]


def test_a_directory_in_the_way_is_an_error_line_not_an_exception(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.mkdir()
    got = FileTail(path).poll()
    assert got.error and "metrics.jsonl" in got.error and got.lines == []
