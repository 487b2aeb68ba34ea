"""TF-free TFDS builder for DomainNet (cleaned version; Peng et al. 2019).

TFDS has a ``domainnet`` builder, but it reads its split files with ``tf.io.gfile`` and
cannot be prepared without TensorFlow; this one is registered as ``tljax_domainnet``
(configs ``clipart``, ``infograph``, ``painting``, ``quickdraw``, ``real``, ``sketch``) so the
two never share a data folder. Splits are the official ``<domain>_train.txt`` and
``<domain>_test.txt`` lists, whose labels index the class list below (the same list as
TFDS's builder: sorted ignoring case, ``_`` and ``-``); every listed file's class folder
is checked against that list at build time.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from tljax.data.benchmarks.builders._common import fetch_file, find_file, normalize_name
from tljax.data.benchmarks.builders._photos import DomainConfig, PhotoBuilder

DOMAINNET_CLASSES = (
    "aircraft_carrier", "airplane", "alarm_clock", "ambulance", "angel", "animal_migration",
    "ant", "anvil", "apple", "arm", "asparagus", "axe", "backpack", "banana", "bandage",
    "barn", "baseball", "baseball_bat", "basket", "basketball", "bat", "bathtub", "beach",
    "bear", "beard", "bed", "bee", "belt", "bench", "bicycle", "binoculars", "bird",
    "birthday_cake", "blackberry", "blueberry", "book", "boomerang", "bottlecap", "bowtie",
    "bracelet", "brain", "bread", "bridge", "broccoli", "broom", "bucket", "bulldozer",
    "bus", "bush", "butterfly", "cactus", "cake", "calculator", "calendar", "camel",
    "camera", "camouflage", "campfire", "candle", "cannon", "canoe", "car", "carrot",
    "castle", "cat", "ceiling_fan", "cello", "cell_phone", "chair", "chandelier", "church",
    "circle", "clarinet", "clock", "cloud", "coffee_cup", "compass", "computer", "cookie",
    "cooler", "couch", "cow", "crab", "crayon", "crocodile", "crown", "cruise_ship", "cup",
    "diamond", "dishwasher", "diving_board", "dog", "dolphin", "donut", "door", "dragon",
    "dresser", "drill", "drums", "duck", "dumbbell", "ear", "elbow", "elephant", "envelope",
    "eraser", "eye", "eyeglasses", "face", "fan", "feather", "fence", "finger",
    "fire_hydrant", "fireplace", "firetruck", "fish", "flamingo", "flashlight",
    "flip_flops", "floor_lamp", "flower", "flying_saucer", "foot", "fork", "frog",
    "frying_pan", "garden", "garden_hose", "giraffe", "goatee", "golf_club", "grapes",
    "grass", "guitar", "hamburger", "hammer", "hand", "harp", "hat", "headphones",
    "hedgehog", "helicopter", "helmet", "hexagon", "hockey_puck", "hockey_stick", "horse",
    "hospital", "hot_air_balloon", "hot_dog", "hot_tub", "hourglass", "house",
    "house_plant", "hurricane", "ice_cream", "jacket", "jail", "kangaroo", "key",
    "keyboard", "knee", "knife", "ladder", "lantern", "laptop", "leaf", "leg", "light_bulb",
    "lighter", "lighthouse", "lightning", "line", "lion", "lipstick", "lobster", "lollipop",
    "mailbox", "map", "marker", "matches", "megaphone", "mermaid", "microphone",
    "microwave", "monkey", "moon", "mosquito", "motorbike", "mountain", "mouse",
    "moustache", "mouth", "mug", "mushroom", "nail", "necklace", "nose", "ocean", "octagon",
    "octopus", "onion", "oven", "owl", "paintbrush", "paint_can", "palm_tree", "panda",
    "pants", "paper_clip", "parachute", "parrot", "passport", "peanut", "pear", "peas",
    "pencil", "penguin", "piano", "pickup_truck", "picture_frame", "pig", "pillow",
    "pineapple", "pizza", "pliers", "police_car", "pond", "pool", "popsicle", "postcard",
    "potato", "power_outlet", "purse", "rabbit", "raccoon", "radio", "rain", "rainbow",
    "rake", "remote_control", "rhinoceros", "rifle", "river", "roller_coaster",
    "rollerskates", "sailboat", "sandwich", "saw", "saxophone", "school_bus", "scissors",
    "scorpion", "screwdriver", "sea_turtle", "see_saw", "shark", "sheep", "shoe", "shorts",
    "shovel", "sink", "skateboard", "skull", "skyscraper", "sleeping_bag", "smiley_face",
    "snail", "snake", "snorkel", "snowflake", "snowman", "soccer_ball", "sock", "speedboat",
    "spider", "spoon", "spreadsheet", "square", "squiggle", "squirrel", "stairs", "star",
    "steak", "stereo", "stethoscope", "stitches", "stop_sign", "stove", "strawberry",
    "streetlight", "string_bean", "submarine", "suitcase", "sun", "swan", "sweater",
    "swing_set", "sword", "syringe", "table", "teapot", "teddy-bear", "telephone",
    "television", "tennis_racquet", "tent", "The_Eiffel_Tower", "The_Great_Wall_of_China",
    "The_Mona_Lisa", "tiger", "toaster", "toe", "toilet", "tooth", "toothbrush",
    "toothpaste", "tornado", "tractor", "traffic_light", "train", "tree", "triangle",
    "trombone", "truck", "trumpet", "t-shirt", "umbrella", "underwear", "van", "vase",
    "violin", "washing_machine", "watermelon", "waterslide", "whale", "wheel", "windmill",
    "wine_bottle", "wine_glass", "wristwatch", "yoga", "zebra", "zigzag",
)  # fmt: skip

_BASE = "http://csr.bu.edu/ftp/visda/2019/multi-source"
# (domain, archive path under _BASE, archive MD5, train list MD5, test list MD5). The MD5s
# are those checked by several public DomainNet loaders (e.g. the Shift Happens benchmark).
_DOMAINS = (
    ("clipart", "groundtruth/clipart.zip", "cd0d8f2d77a4e181449b78ed62bccf1e",
     "b4349693a7f9c05c53955725c47ed6cb", "f5ddbcfd657a3acf9d0f7da10db22565"),
    ("infograph", "infograph.zip", "720380b86f9e6ab4805bb38b6bd135f8",
     "379b50054f4ac2018dca4f89421b92d9", "779626b50869edffe8ea6941c3755c71"),
    ("painting", "groundtruth/painting.zip", "1ae32cdb4f98fe7ab5eb0a351768abfd",
     "7db0e7ca73ad9982f6e1f7f3ef372c0a", "232b35dc53f26d414686ae579e38d9b5"),
    ("quickdraw", "quickdraw.zip", "bdc1b6f09f277da1a263389efe0c7a66",
     "b732ced3939ac8efdd8c0a889dca56cc", "c1a828fdfe216fb109f1c0083a252c6f"),
    ("real", "real.zip", "dcc47055e8935767784b7162e7c7cca6",
     "8ebf02c2075fadd564705f0dc7cd6291", "6098816791c3ebed543c71ffa11b9054"),
    ("sketch", "sketch.zip", "658d8009644040ff7ce30bb2e820850f",
     "1233bd18aa9a8a200bf4cecf1c34ef3e", "d8a222e4672cfd585298aa14d02ea441"),
)  # fmt: skip
_LIST_MD5 = {
    (d, s): md5 for d, _, _, tr, te in _DOMAINS for s, md5 in (("train", tr), ("test", te))
}


class DomainNet(PhotoBuilder):
    """DomainNet (cleaned): 345 classes in 6 domains, official train/test lists."""

    name = "tljax_domainnet"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    CLASS_NAMES = DOMAINNET_CLASSES
    BUILDER_CONFIGS = [
        DomainConfig(
            name=domain,
            description=f"DomainNet {domain}.",
            folder_names=(domain,),
            archive_names=(f"{domain}.zip",),
            url=f"{_BASE}/{archive}",
            md5=md5,
        )
        for domain, archive, md5, _, _ in _DOMAINS
    ]
    DESCRIPTION = "DomainNet (cleaned): clipart, infograph, painting, quickdraw, real, sketch."
    HOMEPAGE = "https://ai.bu.edu/M3SDA/"
    CITATION = "Peng et al., Moment Matching for Multi-Source Domain Adaptation, ICCV 2019."
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional (downloaded from {_BASE}/ otherwise: `groundtruth/clipart.zip`,
    `infograph.zip`, `groundtruth/painting.zip`, `quickdraw.zip`, `real.zip`, `sketch.zip`
    and the lists `domainnet/txt/<domain>_train.txt`, `domainnet/txt/<domain>_test.txt`;
    see https://ai.bu.edu/M3SDA/). Put in manual_dir, for each domain you need, the
    extracted folder `<domain>/<class>/*.jpg` or the archive `<domain>.zip`, and the two
    lists `<domain>_train.txt` and `<domain>_test.txt` (directly in manual_dir or next to
    the domain folder).
    """

    def _split_generators(self, dl_manager):
        domain = self.builder_config.name
        config = self.builder_config
        folder = self._locate(
            dl_manager,
            folder_names=config.folder_names,
            archive_names=config.archive_names,
            url=config.url,
            md5=config.md5,
            accept=lambda d: d if self._has_classes(d) else None,
        )
        splits = {}
        for split in ("train", "test"):
            name = f"{domain}_{split}.txt"
            listed = find_file([folder.parent], name, max_depth=0)
            path = listed or fetch_file(
                dl_manager,
                url=f"{_BASE}/domainnet/txt/{name}",
                manual_names=(name,),
                md5=_LIST_MD5[(domain, split)],
                instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            )
            splits[split] = self._generate_examples(
                self._read_list(path, folder.parent), folder.parent
            )
        return splits

    def _read_list(self, path: Path, root: Path) -> list[tuple[Path, int]]:
        """Reads ``<domain>/<class>/<file> <label>`` lines; checks each class folder."""
        items = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            rel, label_text = line.rsplit(maxsplit=1)
            label = int(label_text)
            if not 0 <= label < len(self.CLASS_NAMES):
                raise ValueError(f"{path}:{number}: label {label} is not in 0..344.")
            folder = Path(rel).parent.name
            if normalize_name(folder) != normalize_name(self.CLASS_NAMES[label]):
                raise ValueError(
                    f"{path}:{number}: file {rel} has label {label} "
                    f"({self.CLASS_NAMES[label]!r}) but lies in class folder {folder!r}."
                )
            file = root / rel
            if not file.is_file():
                raise FileNotFoundError(f"{path}:{number}: listed image {file} does not exist.")
            items.append((file, label))
        return items
