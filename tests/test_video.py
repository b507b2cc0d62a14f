"""`streamx eval --video` (the video extra: moviepy, imageio-ffmpeg, pygame for classic control):
a short CartPole policy is recorded and each episode's MP4 is read back (frames, size)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from streamx.cli import main as cli_main
from streamx.run import resolve_config, train


def test_eval_video_records_each_episode_as_an_mp4(tmp_path, monkeypatch):
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")  # gymnasium's classic-control renderer
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # no display: pygame draws off-screen
    run_dir = tmp_path / "run"
    train(resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 300, "run_dir": str(run_dir), "progress": False}))
    assert cli_main(["eval", str(run_dir), "--episodes", "2", "--video"]) == 0
    lengths = json.loads((run_dir / "eval.json").read_text())["lengths"]
    assert len(lengths) == 2
    for episode, length in enumerate(lengths):
        video = run_dir / "videos" / f"rl-video-episode-{episode}.mp4"
        assert video.read_bytes()[4:8] == b"ftyp"  # an MP4 container
        frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
        # one frame at the reset and one per step; moviepy may leave out the last one
        assert length <= frames <= length + 1
        assert seconds == pytest.approx(frames / 50, abs=0.03)  # CartPole renders at 50 frames/s
        reader = imageio_ffmpeg.read_frames(str(video))
        meta = next(reader)
        assert tuple(meta["size"]) == (600, 400)  # CartPole's screen, width × height
        first = next(reader)
        assert len(first) == 600 * 400 * 3  # RGB24 frames
        assert len(set(first)) > 2  # a drawn scene, not a blank frame
        reader.close()


def test_eval_video_without_rendering_support_is_one_line(tmp_path, monkeypatch):
    """Without what the environment needs to render (pygame for classic control), --video stops
    with one line naming the video extra, and the run directory is left as it was."""
    from streamx.errors import ConfigError
    from streamx.evaluate import evaluate

    run_dir = tmp_path / "run"
    train(resolve_config("stream_q", "CartPole-v1", overrides={"total_steps": 300, "run_dir": str(run_dir),
                                                               "progress": False}))
    pytest.importorskip("moviepy", reason="the video extra is not installed")

    def no_pygame(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("pygame is not installed")

    monkeypatch.setattr(gym.envs.classic_control.cartpole.CartPoleEnv, "render", no_pygame)
    with pytest.raises(ConfigError, match=r"--video needs rendering .*pip install 'streamx-rl\[video\]'"):
        evaluate(run_dir, episodes=1, video=True)
    assert not (run_dir / "eval.json").exists()
