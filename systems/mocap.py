"""Motion capture: Acclaim skeletons (ASF), motions (AMC) and forward kinematics to joint positions.

A frame of motion is a vector of channels: the root's translation (3, ASF length units) and rotation (3, degrees),
then every bone's degrees of freedom in the ASF ``:bonedata`` order (the layout of CMU's AMC files and of
``cmu35WalkJog.mat``). Forward kinematics gives one position per joint: the root, then the end point of every
bone in ``:bonedata`` order (31 joints for the CMU skeletons). Rotations follow the Acclaim convention: a bone's
local frame is ``C`` (its ``axis`` angles), its motion ``R`` (its dof angles), and its world rotation
``parent · C · R · C^-1``; Euler angles compose as ``Rz Ry Rx`` for the order ``XYZ``.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnforce.paths import require_file, text_file

AXES = "xyz"


@dataclass
class Bone:
    """One ASF bone: unit ``direction`` (3,) in the skeleton's rest frame, ``length`` (ASF units), ``axis`` angles
    (3,) degrees with their ``axis_order``, and its degrees of freedom (``dofs``, e.g. ``["rx", "rz"]``)."""

    name: str
    direction: np.ndarray
    length: float
    axis: np.ndarray
    axis_order: str
    dofs: list[str]


@dataclass
class Skeleton:
    """An ASF skeleton: bones in ``:bonedata`` order and each joint's parent (``"root"`` for the root's children)."""

    bones: list[Bone]
    parents: dict[str, str]
    root_order: list[str]
    root_axis_order: str
    root_orientation: np.ndarray
    children_of_root: list[str] = field(default_factory=list)

    @property
    def joint_names(self) -> list[str]:
        """``root`` then every bone, the order of :func:`forward_kinematics`' joints."""
        return ["root"] + [bone.name for bone in self.bones]

    @property
    def num_channels(self) -> int:
        """Channels per frame: 6 for the root plus every bone's dofs."""
        return len(self.root_order) + sum(len(bone.dofs) for bone in self.bones)

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(parent, child) joint indices of every bone."""
        index = {name: i for i, name in enumerate(self.joint_names)}
        return [(index[self.parents[bone.name]], index[bone.name]) for bone in self.bones]


def euler_matrix(angles_deg: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """Rotation matrices (..., 3, 3) from Euler angles (..., 3) in degrees given for x, y, z; for ``order`` "XYZ"
    the x rotation is applied first: ``R = Rz Ry Rx``."""
    radians = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    result = np.broadcast_to(np.eye(3), radians.shape[:-1] + (3, 3)).copy()
    for axis in order.lower():
        k = AXES.index(axis)
        c, s = np.cos(radians[..., k]), np.sin(radians[..., k])
        rotation = np.zeros(radians.shape[:-1] + (3, 3))
        i, j = [a for a in range(3) if a != k]
        rotation[..., k, k] = 1.0
        rotation[..., i, i], rotation[..., j, j] = c, c
        rotation[..., i, j], rotation[..., j, i] = -s, s
        if k == 1:  # about y the signs are the other way round: (z, x) is the positive pair
            rotation[..., i, j], rotation[..., j, i] = s, -s
        result = rotation @ result
    return result


def read_asf(path: str | Path) -> Skeleton:
    """Read an Acclaim ASF skeleton; ValueError naming the file for anything unreadable."""
    path = require_file(path, "skeleton")
    with text_file(path, "an Acclaim ASF skeleton"):
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    section, bones, parents, current = None, [], {}, None
    root_order, root_axis, root_orientation = [], "XYZ", np.zeros(3)
    try:
        for line in lines:
            if not line:
                continue
            if line.startswith(":"):
                section = line.split()[0][1:]
                continue
            words = line.split()
            if section == "root":
                if words[0] == "order":
                    root_order = [w.lower() for w in words[1:]]
                elif words[0] == "axis":
                    root_axis = words[1]
                elif words[0] == "orientation":
                    root_orientation = np.array([float(w) for w in words[1:4]])
            elif section == "bonedata":
                if words[0] == "begin":
                    current = {"dofs": []}
                elif words[0] == "end":
                    bones.append(
                        Bone(
                            current["name"],
                            current["direction"] / np.linalg.norm(current["direction"]),
                            current["length"],
                            current["axis"],
                            current["axis_order"],
                            current["dofs"],
                        )
                    )
                elif words[0] == "name":
                    current["name"] = words[1]
                elif words[0] == "direction":
                    current["direction"] = np.array([float(w) for w in words[1:4]])
                elif words[0] == "length":
                    current["length"] = float(words[1])
                elif words[0] == "axis":
                    current["axis"] = np.array([float(w) for w in words[1:4]])
                    current["axis_order"] = words[4]
                elif words[0] == "dof":
                    current["dofs"] = [w.lower() for w in words[1:]]
            elif section == "hierarchy" and words[0] not in ("begin", "end"):
                for child in words[1:]:
                    parents[child] = words[0]
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"{path}: malformed ASF skeleton ({type(error).__name__}: {error})") from None
    missing = [bone.name for bone in bones if bone.name not in parents]
    if not bones or missing or sorted(root_order) != ["rx", "ry", "rz", "tx", "ty", "tz"]:
        raise ValueError(f"{path}: incomplete ASF skeleton (bones without parents: {missing}, root order {root_order})")
    return Skeleton(bones, parents, root_order, root_axis, root_orientation)


def read_amc(path: str | Path, skeleton: Skeleton) -> np.ndarray:
    """Frames (T, skeleton.num_channels) of an Acclaim AMC file, in the skeleton's channel order."""
    path = require_file(path, "motion")
    widths = {"root": len(skeleton.root_order), **{bone.name: len(bone.dofs) for bone in skeleton.bones}}
    order = ["root"] + [bone.name for bone in skeleton.bones if bone.dofs]
    frames, current = [], None
    for line in path.read_text().splitlines():
        words = line.split()
        if not words or line.startswith((":", "#")):
            continue
        if len(words) == 1 and words[0].isdigit():
            current = {}
            frames.append(current)
        elif current is not None:
            current[words[0]] = [float(w) for w in words[1:]]
    rows = []
    for number, frame in enumerate(frames, start=1):
        if any(len(frame.get(name, [])) != widths[name] for name in order):
            raise ValueError(f"{path}: frame {number} lacks channels of the skeleton's bones")
        rows.append(np.concatenate([frame[name] for name in order]))
    if not rows:
        raise ValueError(f"{path}: no frames")
    return np.array(rows)


def forward_kinematics(skeleton: Skeleton, channels: np.ndarray) -> np.ndarray:
    """Joint positions (T, 1 + bones, 3), ASF length units, of frames ``channels`` (T, skeleton.num_channels)."""
    channels = np.asarray(channels, dtype=np.float64)
    if channels.ndim != 2 or channels.shape[1] != skeleton.num_channels:
        raise ValueError(f"channels must have shape (T, {skeleton.num_channels}), got {list(channels.shape)}")
    num_frames = channels.shape[0]
    root = dict(zip(skeleton.root_order, channels[:, :6].T, strict=True))
    root_axis = euler_matrix(skeleton.root_orientation, skeleton.root_axis_order)
    root_angles = np.stack([root["rx"], root["ry"], root["rz"]], axis=-1)
    rotations = {"root": root_axis @ euler_matrix(root_angles) @ root_axis.T}
    positions = {"root": np.stack([root["tx"], root["ty"], root["tz"]], axis=-1)}
    column = len(skeleton.root_order)
    for bone in skeleton.bones:  # ASF lists every bone after its parent
        angles = np.zeros((num_frames, 3))
        for dof in bone.dofs:
            angles[:, AXES.index(dof[1])] = channels[:, column]
            column += 1
        axis = euler_matrix(bone.axis, bone.axis_order)
        parent = skeleton.parents[bone.name]
        rotations[bone.name] = rotations[parent] @ axis @ euler_matrix(angles) @ axis.T
        positions[bone.name] = positions[parent] + bone.length * (rotations[bone.name] @ bone.direction)
    return np.stack([positions[name] for name in skeleton.joint_names], axis=1)
