"""A trainer whose disk fills up (a real one: a small tmpfs of the process's own, see ``tests.full_disk``)
waits for space instead of failing the training or dying, and finishes it once there is space."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.detector.conftest import REF
from tests.full_disk import MiB, SmallDisk, small_disks
from tests.harness import serve
from tests.trainer.conftest import Project
from visionloop.common.v1 import training_pb2


async def test_a_full_disk_holds_the_training_until_there_is_space(project: Project, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        "LOOP_HOST": project.target,
        "LOOP_ORGANIZATION": REF.organization,
        "LOOP_PROJECT": REF.project,
        "TRAINER_CLAIM_INTERVAL_SECONDS": "0.2",
        "TRAINER_LEASE_SECONDS": "5",
        "TRAINER_STEP_BACKOFF_SECONDS": "0.05",  # without the wait, three quick attempts would fail it
        "OMP_NUM_THREADS": "1",
    }
    with serve("trainer", tmp_path, env, prefix=small_disks({data: 64 * MiB})) as trainer:
        disk = SmallDisk(trainer, data)
        disk.fill(leave=64 * 1024)  # the training's record fits, its images do not
        created = await project.create_training()

        def waiting(training: training_pb2.Training) -> bool:
            return any("no space left" in error.message for error in training.status.errors)

        held = await project.wait_for(created.id, waiting, within=60)
        assert held.phase == training_pb2.TRAINING_PHASE_RUNNING
        (error,) = held.status.errors
        assert error.state == training_pb2.TRAINING_STATE_DATA_DOWNLOADING
        assert not error.critical
        await asyncio.to_thread(trainer.wait_for, "out of a resource")

        disk.free()
        ended = await project.ended(created.id, within=240)
        assert ended.phase == training_pb2.TRAINING_PHASE_SUCCEEDED, ended.status
        assert [e.message for e in ended.status.errors] == [error.message]  # one StepError for the whole wait
        assert trainer.proc.poll() is None
