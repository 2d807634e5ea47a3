import numpy as np
import pytest
from videos import corrupt_middle, truncate, without_index, write_audio_only, write_clip

from pipelines.frames import VideoError, VideoReader


def read_all(path, fps=5.0):
    with VideoReader(str(path), fps=fps, threads=2) as reader:
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


def test_a_cut_reports_where_the_video_data_ends(tmp_path):
    whole = write_clip(tmp_path / "f.mp4", seconds=4, fps=25, faststart=True)
    reader, frames = read_all(truncate(whole, tmp_path / "fcut.mp4", 0.5))
    assert reader.info.duration_s == pytest.approx(4.0, abs=0.05)  # what the index says
    assert reader.duration_s == pytest.approx(frames[-1].t_s, abs=0.3)  # what there is
    (note,) = [w for w in reader.info.warnings if "video data ends" in w]
    assert note.endswith("of the 4.0 s the container states (truncated?)")
    reader, _ = read_all(whole)
    assert reader.info.warnings == [] and reader.duration_s == pytest.approx(4.0, abs=0.05)


def test_joined_recordings_whose_timestamps_restart_are_read_to_the_end(tmp_path):
    part = write_clip(tmp_path / "part.ts", seconds=2, fps=10).read_bytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(part + part)  # MPEG-TS concatenates: the second half starts at 0 again
    reader, frames = read_all(joined, fps=5)
    times = [f.t_s for f in frames]
    assert len(frames) == 20 and times == sorted(times)
    assert times[-1] == pytest.approx(3.8, abs=0.15)
    assert reader.info.warnings == [
        "timestamps restart 1 time (joined recordings?): later times follow on"
    ]


def test_frames_lost_at_the_start_do_not_shift_the_times_of_the_rest(tmp_path):
    clean = write_clip(tmp_path / "g.mp4", seconds=6, fps=10, gop=5, faststart=True)
    data = bytearray(clean.read_bytes())
    start = data.find(b"mdat") + 4
    data[start : start + (len(data) - start) // 3] = bytes(
        np.random.default_rng(0).integers(0, 256, (len(data) - start) // 3, dtype=np.uint8)
    )
    (tmp_path / "lost.mp4").write_bytes(bytes(data))
    reader, frames = read_all(tmp_path / "lost.mp4", fps=5)
    _, whole = read_all(clean, fps=5)
    assert frames[0].t_s >= 1.5  # the first picture that decodes, at its own time
    note = f"video data starts at {frames[0].t_s:.1f} s (the frames before it could not be decoded)"
    assert note in reader.info.warnings
    by_time = {round(f.t_s, 2): f.image for f in whole}
    for f in frames[-3:]:  # the same pictures at the same times as in the undamaged clip
        assert np.abs(f.image.astype(int) - by_time[round(f.t_s, 2)]).mean() < 3


def test_the_largest_video_stream_is_read_not_a_small_first_one(tmp_path):
    import av

    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as out:
        small, large = out.add_stream("mpeg4", rate=10), out.add_stream("mpeg4", rate=10)
        for stream, (w, h) in ((small, (64, 48)), (large, (160, 120))):
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(10):
            for stream in (small, large):
                image = np.full((stream.height, stream.width, 3), 20 * i, np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
        for stream in (small, large):
            out.mux(stream.encode())
    reader, frames = read_all(path)
    assert (reader.info.width, reader.info.height) == (160, 120)
    assert frames[0].image.shape == (120, 160, 3)


def test_a_source_slower_than_the_picking_rate_gives_each_frame_its_own_interval(tmp_path):
    reader, frames = read_all(write_clip(tmp_path / "slow.mp4", seconds=4, fps=2), fps=5)
    assert len(frames) == 8 and reader.sample_interval_s == pytest.approx(0.5)
    reader, _ = read_all(write_clip(tmp_path / "fast.mp4", seconds=1, fps=25), fps=5)
    assert reader.sample_interval_s == pytest.approx(0.2)


def test_prefetcher_yields_every_frame_in_order_and_reraises_errors(tmp_path):
    from common.prefetch import Prefetcher

    path = write_clip(tmp_path / "a.mp4", seconds=2, fps=10)
    with VideoReader(str(path), fps=5, threads=2) as reader:
        direct = [f.index for f in reader.frames()]
    with VideoReader(str(path), fps=5, threads=2) as reader:
        fetched = Prefetcher(reader.frames(), depth=2)
        assert [f.index for f in fetched] == direct
        assert fetched.busy_s > 0

    def broken():
        yield from ()
        raise VideoError("decoding failed after 3 frames")

    with pytest.raises(VideoError, match="after 3 frames"):
        list(Prefetcher(broken()))


def test_dropping_non_reference_frames_keeps_picks_times_and_counts(tmp_path):
    """x264's default B-frames are never referenced here: dropped unseen while picking every
    6th frame, each pick falls on the next decoded frame, indexed by its time."""
    path = write_clip(tmp_path / "b.mp4", seconds=3, fps=30, size=(160, 120))
    with VideoReader(str(path), fps=5, threads=2, skip_nonref=True) as reader:
        frames = list(reader.frames())
    info = reader.info
    assert 30 < info.frames_decoded < 90 and info.frames_decoded + info.frames_skipped == 90
    assert len(frames) == 15
    for k, frame in enumerate(frames):
        assert 0 <= frame.index - 6 * k <= 2
        assert frame.index == round(frame.t_s * 30)


def test_non_reference_frames_are_decoded_when_picking_more_than_every_other_frame(tmp_path):
    path = write_clip(tmp_path / "b.mp4", seconds=1, fps=30, size=(160, 120))
    with VideoReader(str(path), fps=20, threads=2, skip_nonref=True) as reader:
        frames = list(reader.frames())
    assert reader.info.frames_decoded == 30 and reader.info.frames_skipped == 0
    assert len(frames) == 20
