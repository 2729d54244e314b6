"""Human3.6M facts: the four cameras' calibration, the subjects, their splits and the actions.

The calibration is the public one, as published with VideoPose3D (facebookresearch/VideoPose3D,
common/h36m_dataset.py, h36m_cameras_intrinsic_params and h36m_cameras_extrinsic_params); the
projection math that uses it is `gentg_jax.camera`'s.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gentg_jax import camera as camera_lib

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
# The 15 action names of the protocol tables (the text before the first space of a file's action).
ACTIONS = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class CameraIntrinsics:
    id: str
    center: tuple[float, float]  # pixels
    focal_length: tuple[float, float]  # pixels
    radial_distortion: tuple[float, float, float]  # k1, k2, k3
    tangential_distortion: tuple[float, float]  # p1, p2
    res_w: int
    res_h: int


@dataclasses.dataclass(frozen=True)
class CameraExtrinsics:
    orientation: tuple[float, float, float, float]  # camera-to-world quaternion (w, x, y, z)
    translation_mm: tuple[float, float, float]  # camera centre in world coordinates, millimetres


def normalized_intrinsic(camera: CameraIntrinsics) -> np.ndarray:
    """The (9,) float32 intrinsic vector with focal length and centre in normalised units."""
    w, h = camera.res_w, camera.res_h
    center = camera_lib.normalize_screen_coordinates(np.asarray(camera.center, np.float64), w, h)
    focal = np.asarray(camera.focal_length, np.float64) / w * 2
    return np.concatenate(
        [focal, center, camera.radial_distortion, camera.tangential_distortion]
    ).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Camera:
    """One calibrated camera of one subject's capture, in library units."""

    id: str
    intrinsic: np.ndarray  # (9,) normalised
    orientation: np.ndarray  # (4,) camera-to-world quaternion
    translation: np.ndarray  # (3,) metres
    res_w: int
    res_h: int

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.res_w, self.res_h)


def camera(subject: str, index: int) -> Camera:
    """The calibrated camera `index` (0..3, in CAMERA_IDS order) of a Human3.6M subject."""
    if subject not in EXTRINSICS:
        raise KeyError(f"no camera parameters for subject {subject!r}; known: {sorted(EXTRINSICS)}")
    if not 0 <= index < len(INTRINSICS):
        raise IndexError(f"camera index {index} out of range 0..{len(INTRINSICS) - 1}")
    intrinsics, extrinsics = INTRINSICS[index], EXTRINSICS[subject][index]
    return Camera(
        id=intrinsics.id,
        intrinsic=normalized_intrinsic(intrinsics),
        orientation=np.asarray(extrinsics.orientation, np.float32),
        translation=np.asarray(extrinsics.translation_mm, np.float32) / 1000,
        res_w=intrinsics.res_w,
        res_h=intrinsics.res_h,
    )


# The public calibration (see the module docstring).
# Intrinsics are in CAMERA_IDS order; EXTRINSICS[subject][i] belongs to INTRINSICS[i].
INTRINSICS = (
    CameraIntrinsics(
        id="54138969",
        center=(512.54150390625, 515.4514770507812),
        focal_length=(1145.0494384765625, 1143.7811279296875),
        radial_distortion=(-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
        tangential_distortion=(-0.0009756988729350269, -0.00142447161488235),
        res_w=1000,
        res_h=1002,
    ),
    CameraIntrinsics(
        id="55011271",
        center=(508.8486328125, 508.0649108886719),
        focal_length=(1149.6756591796875, 1147.5916748046875),
        radial_distortion=(-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
        tangential_distortion=(-0.0016190266469493508, -0.0027408944442868233),
        res_w=1000,
        res_h=1000,
    ),
    CameraIntrinsics(
        id="58860488",
        center=(519.8158569335938, 501.40264892578125),
        focal_length=(1149.1407470703125, 1148.7989501953125),
        radial_distortion=(-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
        tangential_distortion=(0.0014843869721516967, -0.0007599993259645998),
        res_w=1000,
        res_h=1000,
    ),
    CameraIntrinsics(
        id="60457274",
        center=(514.9682006835938, 501.88201904296875),
        focal_length=(1145.5113525390625, 1144.77392578125),
        radial_distortion=(-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
        tangential_distortion=(-0.0005872055771760643, -0.0018133620033040643),
        res_w=1000,
        res_h=1002,
    ),
)
EXTRINSICS = {
    "S1": (
        CameraExtrinsics(
            orientation=(
                0.1407056450843811,
                -0.1500701755285263,
                -0.755240797996521,
                0.6223280429840088,
            ),
            translation_mm=(1841.1070556640625, 4955.28466796875, 1563.4454345703125),
        ),
        CameraExtrinsics(
            orientation=(
                0.6157187819480896,
                -0.764836311340332,
                -0.14833825826644897,
                0.11794740706682205,
            ),
            translation_mm=(1761.278564453125, -5078.0068359375, 1606.2650146484375),
        ),
        CameraExtrinsics(
            orientation=(
                0.14651472866535187,
                -0.14647851884365082,
                0.7653023600578308,
                -0.6094175577163696,
            ),
            translation_mm=(-1846.7777099609375, 5215.04638671875, 1491.972412109375),
        ),
        CameraExtrinsics(
            orientation=(
                0.5834008455276489,
                -0.7853162288665771,
                0.14548823237419128,
                -0.14749594032764435,
            ),
            translation_mm=(-1794.7896728515625, -3722.698974609375, 1574.8927001953125),
        ),
    ),
    "S5": (
        CameraExtrinsics(
            orientation=(
                0.1467377245426178,
                -0.162370964884758,
                -0.7551892995834351,
                0.6178938746452332,
            ),
            translation_mm=(2097.3916015625, 4880.94482421875, 1605.732421875),
        ),
        CameraExtrinsics(
            orientation=(
                0.6159758567810059,
                -0.7626792192459106,
                -0.15728192031383514,
                0.1189815029501915,
            ),
            translation_mm=(2031.7008056640625, -5167.93310546875, 1612.923095703125),
        ),
        CameraExtrinsics(
            orientation=(
                0.14291371405124664,
                -0.12907841801643372,
                0.7678384780883789,
                -0.6110143065452576,
            ),
            translation_mm=(-1620.5948486328125, 5171.65869140625, 1496.43701171875),
        ),
        CameraExtrinsics(
            orientation=(
                0.5920479893684387,
                -0.7814217805862427,
                0.1274748593568802,
                -0.15036417543888092,
            ),
            translation_mm=(-1637.1737060546875, -3867.3173828125, 1547.033203125),
        ),
    ),
    "S6": (
        CameraExtrinsics(
            orientation=(
                0.1337897777557373,
                -0.15692396461963654,
                -0.7571090459823608,
                0.6198879480361938,
            ),
            translation_mm=(1935.4517822265625, 4950.24560546875, 1618.0838623046875),
        ),
        CameraExtrinsics(
            orientation=(
                0.6147197484970093,
                -0.7628812789916992,
                -0.16174767911434174,
                0.11819244921207428,
            ),
            translation_mm=(1969.803955078125, -5128.73876953125, 1632.77880859375),
        ),
        CameraExtrinsics(
            orientation=(
                0.1529948115348816,
                -0.13529130816459656,
                0.7646096348762512,
                -0.6112781167030334,
            ),
            translation_mm=(-1769.596435546875, 5185.361328125, 1476.993408203125),
        ),
        CameraExtrinsics(
            orientation=(
                0.5916101336479187,
                -0.7804774045944214,
                0.12832270562648773,
                -0.1561593860387802,
            ),
            translation_mm=(-1721.668701171875, -3884.13134765625, 1540.4879150390625),
        ),
    ),
    "S7": (
        CameraExtrinsics(
            orientation=(
                0.1435241848230362,
                -0.1631336808204651,
                -0.7548328638076782,
                0.6188824772834778,
            ),
            translation_mm=(1974.512939453125, 4926.3544921875, 1597.8326416015625),
        ),
        CameraExtrinsics(
            orientation=(
                0.6141672730445862,
                -0.7638262510299683,
                -0.1596645563840866,
                0.1177929937839508,
            ),
            translation_mm=(1937.0584716796875, -5119.7900390625, 1631.5665283203125),
        ),
        CameraExtrinsics(
            orientation=(
                0.14550060033798218,
                -0.12874816358089447,
                0.7660516500473022,
                -0.6127139329910278,
            ),
            translation_mm=(-1741.8111572265625, 5208.24951171875, 1464.8245849609375),
        ),
        CameraExtrinsics(
            orientation=(
                0.5912848114967346,
                -0.7821764349937439,
                0.12445473670959473,
                -0.15196487307548523,
            ),
            translation_mm=(-1734.7105712890625, -3832.42138671875, 1548.5830078125),
        ),
    ),
    "S8": (
        CameraExtrinsics(
            orientation=(
                0.14110587537288666,
                -0.15589867532253265,
                -0.7561917304992676,
                0.619644045829773,
            ),
            translation_mm=(2150.65185546875, 4896.1611328125, 1611.9046630859375),
        ),
        CameraExtrinsics(
            orientation=(
                0.6169601678848267,
                -0.7647668123245239,
                -0.14846350252628326,
                0.11158157885074615,
            ),
            translation_mm=(2219.965576171875, -5148.453125, 1613.0440673828125),
        ),
        CameraExtrinsics(
            orientation=(
                0.1471444070339203,
                -0.13377119600772858,
                0.7670128345489502,
                -0.6100369691848755,
            ),
            translation_mm=(-1571.2215576171875, 5137.0185546875, 1498.1761474609375),
        ),
        CameraExtrinsics(
            orientation=(
                0.5927824378013611,
                -0.7825870513916016,
                0.12147816270589828,
                -0.14631995558738708,
            ),
            translation_mm=(-1476.913330078125, -3896.7412109375, 1547.97216796875),
        ),
    ),
    "S9": (
        CameraExtrinsics(
            orientation=(
                0.15540587902069092,
                -0.15548215806484222,
                -0.7532095313072205,
                0.6199594736099243,
            ),
            translation_mm=(2044.45849609375, 4935.1171875, 1481.2275390625),
        ),
        CameraExtrinsics(
            orientation=(
                0.618784487247467,
                -0.7634735107421875,
                -0.14132238924503326,
                0.11933968216180801,
            ),
            translation_mm=(1990.959716796875, -5123.810546875, 1568.8048095703125),
        ),
        CameraExtrinsics(
            orientation=(
                0.13357827067375183,
                -0.1367100477218628,
                0.7689454555511475,
                -0.6100738644599915,
            ),
            translation_mm=(-1670.9921875, 5211.98583984375, 1528.387939453125),
        ),
        CameraExtrinsics(
            orientation=(
                0.5879399180412292,
                -0.7823407053947449,
                0.1427614390850067,
                -0.14794869720935822,
            ),
            translation_mm=(-1696.04345703125, -3827.099853515625, 1591.4127197265625),
        ),
    ),
    "S11": (
        CameraExtrinsics(
            orientation=(
                0.15232472121715546,
                -0.15442320704460144,
                -0.7547563314437866,
                0.6191070079803467,
            ),
            translation_mm=(2098.440185546875, 4926.5546875, 1500.278564453125),
        ),
        CameraExtrinsics(
            orientation=(
                0.6189449429512024,
                -0.7600917220115662,
                -0.15300633013248444,
                0.1255258321762085,
            ),
            translation_mm=(2083.182373046875, -4912.1728515625, 1561.07861328125),
        ),
        CameraExtrinsics(
            orientation=(
                0.14943228662014008,
                -0.15650227665901184,
                0.7681233882904053,
                -0.6026304364204407,
            ),
            translation_mm=(-1609.8153076171875, 5177.3359375, 1537.896728515625),
        ),
        CameraExtrinsics(
            orientation=(
                0.5894251465797424,
                -0.7818877100944519,
                0.13991211354732513,
                -0.14715361595153809,
            ),
            translation_mm=(-1590.738037109375, -3854.1689453125, 1578.017578125),
        ),
    ),
}
