"""Meta-World 3.1.1 on metarl's MuJoCo (>= 3.17): the one fix it needs, applied by metarl.

metaworld 3.1.1 pins ``mujoco==3.3.0``, which lacks the ``mujoco.batch`` API of metarl's
locomotion sampler, so metarl installs it without its pins (``pip install --no-deps
metaworld==3.1.1``, next to ``metarl[metaworld]`` for its real dependencies). On that MuJoCo
every Meta-World env fails in its constructor:
``SawyerMocapBase.reset_mocap_welds`` writes an 11-entry array into each weld's
``model.eq_data[i]``, and MuJoCo 3.17 grew ``mjNEQDATA`` from 11 to 12. The twelfth entry is
new (the compiled models hold 1.0 there); the first eleven mean what they meant in 3.3.0
(anchor, relative pose, torque scale). ``apply()`` replaces the method by one that writes the
same eleven values into the first eleven entries and leaves the twelfth as compiled; on a
MuJoCo with ``mjNEQDATA == 11`` it changes nothing.

Why this is safe, and how it is tested (``tests/test_metaworld.py``): with ``mjNEQDATA ==
11`` the patched method writes exactly the original's values (no MuJoCo with both layouts
runs next to metarl's, so the test compares the patched method's writes with the
original's eleven values on the 12-entry layout, entry by entry), and a reach and a push
trajectory of 100 random actions are bit-identical whatever the twelfth entry holds (0, the
compiled 1.0, or 5), so the entry the patch leaves alone does not change trajectories. The
planning notes of issue 14 measured Meta-World on mujoco 4.0 with this fix against mujoco
3.3.0: observations within ~1e-3, as between 3.16 and 3.3.0 themselves.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

# The weld data Meta-World writes: anchor 0, relative position 0, relative quaternion
# (-1, 0, 0, 0), torque scale 5.
WELD_DATA = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0])


def reset_mocap_welds(self: Any) -> None:
    """``SawyerMocapBase.reset_mocap_welds`` for any ``mjNEQDATA >= 11``: writes ``WELD_DATA``
    into the first eleven entries of each weld's ``eq_data``."""
    if self.model.nmocap > 0 and self.model.eq_data is not None:
        for i in range(self.model.eq_data.shape[0]):
            if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                self.model.eq_data[i, : len(WELD_DATA)] = WELD_DATA


def needed() -> bool:
    """Whether this MuJoCo's ``eq_data`` rows are longer than Meta-World 3.1.1 writes."""
    return int(mujoco.mjNEQDATA) != len(WELD_DATA)


def apply() -> bool:
    """Install the fix into ``metaworld.sawyer_xyz_env`` if this MuJoCo needs it (idempotent).

    Returns:
        Whether the fix is installed.

    Raises:
        RuntimeError: ``mjNEQDATA`` is below 11 (a MuJoCo older than any Meta-World 3 supports).
    """
    if int(mujoco.mjNEQDATA) < len(WELD_DATA):
        raise RuntimeError(
            f"This MuJoCo ({mujoco.__version__}) has mjNEQDATA = {mujoco.mjNEQDATA}, fewer than the "
            f"{len(WELD_DATA)} entries Meta-World writes; install mujoco >= 3.3 (pip install -U mujoco)."
        )
    from metaworld import sawyer_xyz_env

    if needed():
        sawyer_xyz_env.SawyerMocapBase.reset_mocap_welds = reset_mocap_welds  # type: ignore[method-assign]
    return sawyer_xyz_env.SawyerMocapBase.reset_mocap_welds is reset_mocap_welds


__all__ = ["WELD_DATA", "apply", "needed", "reset_mocap_welds"]
