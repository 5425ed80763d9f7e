"""`modeling_eat.outputs`: the writability probe, write-beside-then-rename, and the refusal to overwrite another run's
folder (and, when told to, the deletion of exactly its files)."""

import pytest

from modeling_eat.outputs import (
    check_output_folder,
    check_writable,
    move_into_place,
    remove_run_files,
    staging_path,
)
from modeling_eat.runtime import CommandError

from eat_testing import read_only_folder


def test_a_folder_that_cannot_be_written_is_refused_in_one_line_and_nothing_is_left(tmp_path):
    with read_only_folder(tmp_path / "locked") as locked:
        for path in (locked, locked / "new" / "run"):
            with pytest.raises(CommandError, match=r"^--output_dir .* cannot be (written|created)") as error:
                check_writable(path)
            assert "\n" not in str(error.value)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(CommandError, match="is a file, not a folder"):
        check_writable(tmp_path / "file")
    with pytest.raises(CommandError, match="cannot be created: .* is a file"):
        check_writable(tmp_path / "file" / "run")

    # A writable destination passes, and the probe neither creates the missing folder nor stays behind.
    check_writable(tmp_path / "new" / "run")
    check_writable(tmp_path / "features.safetensors", "--output", is_file=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file", "locked"]
    assert (tmp_path / "file").read_text() == "mine"


def test_move_into_place_replaces_a_file_or_a_folder_whole(tmp_path):
    final = tmp_path / "features.safetensors"
    final.write_text("old")
    staging = staging_path(final)
    staging.write_text("new")
    move_into_place(staging, final)
    assert final.read_text() == "new" and not staging.exists()

    folder = tmp_path / "features"
    (folder / "frame_embeddings").mkdir(parents=True)
    (folder / "frame_embeddings" / "000007.npy").write_text("stale")
    staging = staging_path(folder)
    (staging / "frame_embeddings").mkdir(parents=True)
    (staging / "frame_embeddings" / "000000.npy").write_text("fresh")
    move_into_place(staging, folder)
    assert [path.name for path in (folder / "frame_embeddings").iterdir()] == ["000000.npy"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["features", "features.safetensors"]


def test_another_runs_folder_is_refused_and_overwriting_deletes_only_its_files(tmp_path):
    assert check_output_folder(tmp_path / "new", overwrite=False) == []
    folder = tmp_path / "run"
    (folder / "checkpoint-10").mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "eval_results.json", "trainer_state.json",
                 "confusion_matrix.png", "notes.txt"):
        (folder / name).write_text(name)
    with pytest.raises(CommandError) as error:
        check_output_folder(folder, overwrite=False)
    message = str(error.value)
    assert message.startswith(f"--output_dir {folder} already holds another model or run (checkpoint-10, ")
    assert "--overwrite_output_dir" in message and "notes.txt" not in message and "\n" not in message
    assert len(list(folder.iterdir())) == 7  # refusing touched nothing

    found = check_output_folder(folder, overwrite=True)
    assert [path.name for path in found] == [
        "checkpoint-10", "config.json", "confusion_matrix.png", "eval_results.json", "model.safetensors",
        "trainer_state.json",
    ]
    remove_run_files(found)
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
    assert check_output_folder(folder, overwrite=False) == []  # the user's own files are no run
    # Nor is the log of a run that stopped before it wrote anything: the next run appends to it.
    (folder / "command.log").write_text("stopped at step 3")
    assert check_output_folder(folder, overwrite=False) == []
    assert check_output_folder(folder, overwrite=True) == [folder / "command.log"]
