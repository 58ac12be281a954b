"""Running a suite of cases against one variant: a model (and optionally another system prompt).

A model is ``demo`` (the offline demo model), ``bedrock:<model id or inference profile>`` (the
real boto3 client, configured like production; ``bedrock`` alone is ``BEDROCK_MODEL_ID``),
``replay:<recording file>`` (offline, from ``--record``), or ``recorded`` (each case's own
``recorded`` responses, which drafts made from conversations carry).
"""

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from chat.evals import engine
from chat.evals.cases import Case
from chat.evals.recording import (
    Exchange,
    PromptSwap,
    Recording,
    RecordingError,
    RecordingModel,
    ReplayModel,
    recording_read,
    stored_exchanges,
)
from chat.evals.report import CaseResult, Run, VariantResult
from chat.evals.runner import CaseObservation, run_case
from chat.evals.scoring import judge

MODEL_HELP = (
    "demo, bedrock:<model id or inference profile> (bedrock alone: BEDROCK_MODEL_ID), "
    "replay:<recording file> or recorded (the responses stored in each case file)"
)
SHIPPED_PROMPT = "shipped"


def is_model(spec: str) -> bool:
    return spec in ("demo", "bedrock", "recorded") or spec.startswith(("bedrock:", "replay:"))


def model_normalized(spec: str) -> str:
    """The model spec with defaults filled in. Raises ``ValueError`` saying what is accepted."""
    if spec == "bedrock":
        return f"bedrock:{settings.BEDROCK_MODEL_ID}"
    if not is_model(spec) or spec in ("bedrock:", "replay:"):
        raise ValueError(f"{spec!r} is not a model; use {MODEL_HELP}.")
    return spec


@dataclass(frozen=True)
class Variant:
    """What answers the customer: a model, and the prompt file replacing the shipped prompt."""

    model: str
    prompt_path: Path | None = None

    @property
    def label(self) -> str:
        label = self.model
        if self.prompt_path is not None:
            label += f" + {self.prompt_path.name}"
        return label


class Player:
    """Builds each case's model client for a variant and keeps what ``--record`` should save."""

    def __init__(self, variant: Variant, *, record: bool = False) -> None:
        self.record = record
        self.prompt: str | None = None
        if variant.prompt_path is not None:
            try:
                # Editors end files with a newline; without it a copy of the shipped prompt
                # sends exactly the shipped request.
                self.prompt = variant.prompt_path.read_text(encoding="utf-8").rstrip()
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(
                    f"{variant.prompt_path}: cannot read the prompt file ({error})"
                ) from None
            if not self.prompt.strip():
                raise ValueError(f"{variant.prompt_path}: the prompt file is empty")
        self.recording: Recording | None = None
        model = variant.model
        if model.startswith("replay:"):
            self.recording = recording_read(Path(model.removeprefix("replay:")))
        # Which model the engine builds requests for: a replay reproduces the recorded one.
        source = self.recording.model if self.recording is not None else model
        self.bedrock_model_id = (
            source.removeprefix("bedrock:") if source.startswith("bedrock:") else None
        )
        self._live = (
            engine.bedrock_client()
            if model.startswith("bedrock:")
            else engine.demo_client()
            if model == "demo"
            else None
        )

    def client(
        self, case: Case
    ) -> tuple[engine.ModelClient, ReplayModel | None, RecordingModel | None]:
        """The client for one run of ``case``, the replayer inside it and the recorder, if any.

        Raises ``RecordingError`` when there is nothing to replay for the case.
        """
        replay: ReplayModel | None = None
        recorder: RecordingModel | None = None
        if self._live is not None:
            client: engine.ModelClient = self._live
            if self.record:
                client = recorder = RecordingModel(client)
        elif self.recording is not None:
            if case.name not in self.recording.cases:
                raise RecordingError(f"the recording has no calls for the case {case.name!r}")
            client = replay = ReplayModel(self.recording.cases[case.name])
        else:
            if case.recorded is None:
                raise RecordingError(
                    "the case file has no recorded responses (only drafts made from a "
                    "conversation carry them); run it with another --model"
                )
            client = replay = ReplayModel(stored_exchanges(case.recorded, case=case.name))
        if self.prompt is not None:
            client = PromptSwap(client, self.prompt)
        return client, replay, recorder


def variant_run(
    cases: list[Case], variant: Variant, *, repeat: int = 1, record: bool = False
) -> tuple[VariantResult, dict[str, list[Exchange]]]:
    """Plays every case ``repeat`` times on the current (throwaway) database.

    Returns the results and, with ``record``, every case's exchanges of its last run. Raises
    ``ValueError`` or ``RecordingError`` for an unusable prompt file or recording.
    """
    player = Player(variant, record=record)
    result = VariantResult(label=variant.label)
    recorded: dict[str, list[Exchange]] = {}
    with engine.engine_model(player.bedrock_model_id):
        for case in cases:
            case_result = CaseResult(case=case)
            for _ in range(repeat):
                try:
                    client, replay, recorder = player.client(case)
                except RecordingError as error:
                    case_result.runs.append(_unplayable(case, str(error)))
                    continue
                observation = run_case(case, client, replay=replay)
                case_result.runs.append(Run(observation, judge(case, observation)))
                if recorder is not None:
                    recorded[case.name] = recorder.exchanges
            result.cases.append(case_result)
    return result, recorded


def _unplayable(case: Case, reason: str) -> Run:
    observation = CaseObservation(setup_problem=reason)
    return Run(observation, judge(case, observation))
