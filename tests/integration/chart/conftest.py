"""Fixtures of the packaging tests: the Dockerfile's build replayed once per session."""

from __future__ import annotations

import pytest
from imagekit import ReplayedImage, replay_build_stage


@pytest.fixture(scope="session")
def replayed_image(tmp_path_factory: pytest.TempPathFactory) -> ReplayedImage:
    return replay_build_stage(tmp_path_factory.mktemp("image-replay"))
