"""ASF/AMC reading and forward kinematics on CMU subject 35 (../shared/data/cmu_mocap)."""

import numpy as np
import pytest
from conftest import DATA
from scipy.io import loadmat

from systems.mocap import euler_matrix, forward_kinematics, read_amc, read_asf
from systems.restricted_pickle import load_array_pickle

MOCAP = DATA / "cmu_mocap"


@pytest.fixture(scope="module")
def skeleton():
    if not (MOCAP / "35.asf").is_file():
        pytest.skip(f"reference data not found at {MOCAP}")
    return read_asf(MOCAP / "35.asf")


@pytest.fixture(scope="module")
def walking():
    return loadmat(MOCAP / "cmu35WalkJog.mat")["Y"]


def test_skeleton_has_31_joints_and_62_channels(skeleton):
    assert len(skeleton.joint_names) == 31 and skeleton.num_channels == 62
    assert skeleton.joint_names[:3] == ["root", "lhipjoint", "lfemur"]


def test_amc_frame_one_is_the_first_frame_of_the_gpmat_walking_data(skeleton, walking):
    frames = read_amc(MOCAP / "35_01.amc", skeleton)
    assert frames.shape == (358, 62)
    np.testing.assert_allclose(frames[0], walking[0], atol=1e-4)
    np.testing.assert_allclose(
        forward_kinematics(skeleton, frames[:1]), forward_kinematics(skeleton, walking[:1]), atol=1e-4
    )


def test_bone_lengths_are_the_skeletons_in_every_frame(skeleton, walking):
    joints = forward_kinematics(skeleton, walking)
    assert joints.shape == (len(walking), 31, 3)
    lengths = np.stack(
        [np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1) for parent, child in skeleton.edges]
    )
    np.testing.assert_allclose(
        lengths, np.array([[bone.length] for bone in skeleton.bones]).repeat(len(walking), 1), rtol=1e-12
    )


def test_rest_pose_lays_bones_along_their_directions(skeleton):
    joints = forward_kinematics(skeleton, np.zeros((1, 62)))[0]
    for (parent, child), bone in zip(skeleton.edges, skeleton.bones, strict=True):
        np.testing.assert_allclose(joints[child] - joints[parent], bone.length * bone.direction, atol=1e-12)


def test_root_rotation_turns_the_whole_body_rigidly(skeleton, walking):
    frame = walking[100:101].copy()
    turned = frame.copy()
    turned[0, 4] += 30.0  # yaw (ry), degrees
    before, after = forward_kinematics(skeleton, frame)[0], forward_kinematics(skeleton, turned)[0]
    root_rotation = euler_matrix(frame[0, 3:6])
    turn = euler_matrix(turned[0, 3:6]) @ root_rotation.T  # world rotation taking the old pose to the new
    np.testing.assert_allclose(after - after[0], (before - before[0]) @ turn.T, atol=1e-9)


def test_joint_order_matches_the_gmn_eghn_motion_data(skeleton):
    """The EGHN running data (another subject's skeleton) lists its 30 bones between the same joint indices."""
    path = DATA / "eghn_motion" / "motion_run.pkl"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    edges, _ = load_array_pickle(path)
    assert sorted(tuple(sorted(map(int, e))) for e in edges) == sorted(tuple(sorted(e)) for e in skeleton.edges)


def test_bad_files_and_shapes_are_named(tmp_path, skeleton):
    with pytest.raises(FileNotFoundError, match="no such skeleton file"):
        read_asf(tmp_path / "none.asf")
    (tmp_path / "bad.asf").write_text(":root\n   order TX TY\n:bonedata\n  begin\n  name x\n  end\n")
    with pytest.raises(ValueError, match="bad.asf"):
        read_asf(tmp_path / "bad.asf")
    with pytest.raises(ValueError, match=r"channels must have shape \(T, 62\)"):
        forward_kinematics(skeleton, np.zeros((2, 61)))
