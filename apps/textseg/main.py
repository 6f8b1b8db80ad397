"""textseg MONAI Label app: wiring only (the logic lives in the repository's lib/)."""

import logging
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # MONAI Label only puts the app folder on sys.path
    sys.path.insert(0, _ROOT)

from monailabel.interfaces.app import MONAILabelApp  # noqa: E402

from lib.app_wiring import (  # noqa: E402
    build_datastore, build_infers, build_scoring, build_strategies, build_trainers, on_label_saved)
from lib.app_config import AppSettings  # noqa: E402
from lib.background import yield_cpu  # noqa: E402

logger = logging.getLogger(__name__)


class TextSegApp(MONAILabelApp):
    """Text-prompted 3D segmentation: type what to segment, get a mask back."""

    def __init__(self, app_dir, studies, conf):
        self.settings = AppSettings.from_conf(conf)
        yield_cpu(self.settings.background_nice)  # in MONAI Label's task processes only
        self.model_dir = os.path.join(app_dir, "model")
        os.makedirs(self.model_dir, exist_ok=True)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="textseg",
                         description="Text-guided 3D segmentation with two-pass uncertainty", version="0.1.0")

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        return build_datastore(self)

    def init_infers(self):
        return build_infers(self)

    def init_trainers(self):
        return build_trainers(self)

    def init_strategies(self):
        return build_strategies(self)

    def init_scoring_methods(self):
        return build_scoring(self)

    def on_save_label(self, image_id, label_id):
        super().on_save_label(image_id, label_id)
        return on_label_saved(self, image_id, label_id)
