import numpy as np
import pytest
from videos import corrupt_middle, truncate, without_index, write_audio_only, write_clip

from pipelines.frames import VideoError, VideoReader


def read_all(path, fps=5.0):
    with VideoReader(str(path), fps=fps) as reader:
        frames = list(reader.frames())
        return reader, frames


def test_samples_by_timestamp_at_requested_rate(tmp_path):
    path = write_clip(tmp_path / "a.mp4", seconds=3, fps=30, size=(160, 120))
    reader, frames = read_all(path, fps=5)
    assert reader.info.frames_decoded == 90
    assert len(frames) == 15
    assert [round(f.t_s, 3) for f in frames] == [round(0.2 * i, 3) for i in range(15)]
    assert [f.index for f in frames] == list(range(0, 90, 6))
    assert reader.info.fps == pytest.approx(30, abs=0.01) and reader.info.codec == "h264"
    assert reader.duration_s == pytest.approx(3.0, abs=0.05)
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8


def test_rotation_metadata_turns_frames_upright(tmp_path):
    path = write_clip(tmp_path / "phone.mp4", seconds=1, fps=10, size=(160, 120), rotation=90)
    reader, frames = read_all(path)
    assert reader.info.rotation == 90
    image = frames[0].image
    assert image.shape == (160, 120, 3)
    # The bright corner, top-left as encoded, is bottom-left once turned 90 degrees anticlockwise.
    assert image[-5, 5].mean() > 200 and image[5, 5].mean() < 200


def test_variable_frame_rate_is_sampled_on_the_time_grid(tmp_path):
    times = [0.0, 0.05, 0.1, 0.6, 0.65, 1.0, 1.1, 1.7, 1.75, 1.8, 2.5]
    path = write_clip(tmp_path / "vfr.mp4", fps=20, frame_times=times)
    _, frames = read_all(path, fps=2)
    assert [round(f.t_s, 2) for f in frames] == [0.0, 0.6, 1.0, 1.7, 2.5]


def test_hevc_decodes(tmp_path):
    path = write_clip(tmp_path / "h265.mkv", seconds=1, fps=10, codec="libx265")
    reader, frames = read_all(path)
    assert reader.info.codec == "hevc" and len(frames) == 5


def test_corrupt_stretch_is_skipped_and_decoding_resumes(tmp_path):
    clean = write_clip(tmp_path / "clean.mp4", seconds=4, fps=25, size=(320, 240))
    broken = corrupt_middle(clean, tmp_path / "broken.mp4")
    reader, frames = read_all(broken)
    assert frames[-1].t_s > 3.0  # frames after the damage were still read
    assert reader.info.frames_decoded < 100 or reader.info.corrupt_packets > 0


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "not a readable video"),
        (
            lambda d: (d / "text.mp4").write_text("hello, not a video\n" * 20) or d / "text.mp4",
            "not a readable video",
        ),
        (lambda d: write_audio_only(d / "audio.m4a"), "no video stream (file has audio streams)"),
        (
            lambda d: without_index(write_clip(d / "c.mp4"), d / "noindex.mp4"),
            "not a readable video",
        ),
    ],
)
def test_unreadable_inputs_raise_one_line_reasons(tmp_path, make, reason):
    with pytest.raises(VideoError) as err:
        read_all(make(tmp_path))
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_truncated_file_yields_the_frames_before_the_cut(tmp_path):
    """A recording cut short (disk full, power loss) keeps what was written before the cut when
    the container allows it (Matroska; MP4 with its index first), and fails in one line when
    it does not (MP4 whose index was to come at the end)."""
    fps, seconds = 25, 4  # sampled at 5 fps: 20 frames when whole
    mkv = truncate(
        write_clip(tmp_path / "a.mkv", seconds=seconds, fps=fps), tmp_path / "acut.mkv", 0.5
    )
    faststart = write_clip(tmp_path / "f.mp4", seconds=seconds, fps=fps, faststart=True)
    for path in (mkv, truncate(faststart, tmp_path / "fcut.mp4", 0.5)):
        _, frames = read_all(path)
        assert 5 <= len(frames) <= 12, (path.name, len(frames))
    index_last = write_clip(tmp_path / "clean.mp4", seconds=seconds, fps=fps)
    with pytest.raises(VideoError, match="not a readable video container"):
        read_all(truncate(index_last, tmp_path / "cut.mp4", 0.5))


def test_prefetcher_yields_every_frame_in_order_and_reraises_errors(tmp_path):
    from pipelines.frames import Prefetcher

    path = write_clip(tmp_path / "a.mp4", seconds=2, fps=10)
    with VideoReader(str(path), fps=5) as reader:
        direct = [f.index for f in reader.frames()]
    with VideoReader(str(path), fps=5) as reader:
        fetched = Prefetcher(reader.frames(), depth=2)
        assert [f.index for f in fetched] == direct
        assert fetched.busy_s > 0

    def broken():
        yield from ()
        raise VideoError("decoding failed after 3 frames")

    with pytest.raises(VideoError, match="after 3 frames"):
        list(Prefetcher(broken()))
