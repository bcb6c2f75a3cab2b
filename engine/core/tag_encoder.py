"""The trainable PKS tag encoder of dual-channel conditioning, its inputs and its checkpoints.

How the base model is wired to it (hooks, identity at init, tag guidance) is in
`engine/core/conditioning.py`, which also re-exports everything public here.

Inputs (`encode_tags`)
    A batch of tag dicts (``{field id: value id(s)}``, validated against the taxonomy) becomes a
    `TagIndices`: per sample, per field, up to K *local* value indices -- 0 is the field's "unset",
    ``i`` is the field's i-th value in taxonomy order -- and a mask of the slots in use. A field
    the sample does not set holds one slot, 0 ("unset"). Indices carry the taxonomy's layout
    fingerprint so an encoder built for another taxonomy refuses them.

Encoder (`TagEncoder`)
    * one embedding row per (field, value) plus one "unset" row per field, in a single table
      (field f owns rows ``offset_f .. offset_f + n_f``), so the same value id in two fields
      (``style.palette=neon`` vs ``style.lighting=neon_night``...) never shares a row;
    * a field embedding added to every field's vector, so each token knows which field it is;
    * multi-select fields take the mean of their chosen values' rows;
    * a shared residual MLP, then two heads:
      - ``tokens``: one token per field at the base model's *text* width (the width of
        ``encoder_hidden_states`` entering the transformer: 4096 for UMT5-XXL, 32 for the preview);
      - ``pooled``: the mean over fields of a per-field MLP, projected to the width of the
        timestep embedding (``temb``). Its output projection starts at zero.
    * ``gates``: one learned gate per attention site and head for the tag tokens' attention
      contribution, zero at init (see conditioning.py for why this makes the wrapped model exact).

Dropout (`tag_dropout`)
    Replaces fields by "unset" independently per (sample, field) at a per-field rate, plus an
    optional whole-sample rate (all fields unset, the branch tag guidance uses at inference);
    deterministic for a given ``torch.Generator``.

Checkpoints (`save_tag_encoder` / `load_tag_encoder`)
    ``tag_encoder.safetensors`` + ``tag_encoder.json`` (taxonomy version, every field's value ids,
    dims, base family). A load is refused (`TagEncoderMismatch`, an InvalidRequest) for another
    family, for other fields, a changed single/multi select or a removed (or renamed) value; a
    taxonomy that only *added* values loads, each new value starting from its field's "unset" row.
    The decision is made on the ids (content), so it holds whatever the version strings say.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidRequest, NotFound
from .families import FAMILIES as _FAMILIES
from .families import family_of
from .pks import Taxonomy
from .toolkit.files import atomic_path, write_text

FAMILIES: tuple[str, ...] = tuple(_FAMILIES)  # the family keys a tag encoder may be built for
CONFIG_NAME = "tag_encoder.json"
WEIGHTS_NAME = "tag_encoder.safetensors"
FORMAT = "animatrix-tag-encoder"
FORMAT_VERSION = 1


class TagEncoderMismatch(InvalidRequest):
    """A saved tag encoder does not fit the taxonomy or base family it is loaded for."""

    def __init__(self, message: str) -> None:
        super().__init__("tag_encoder", message)


def family_name(family: Any) -> str:
    """'wan' or 'hunyuanvideo' from a family key or name, a ModelFamily, a ModelSpec or a diffusers class name."""
    family = getattr(family, "family", family)  # a ModelSpec
    try:
        return family_of(family.lower() if isinstance(family, str) and family.lower() in FAMILIES else family).key
    except InvalidRequest:
        raise InvalidRequest("family", f"no tag encoder support for {family!r}; supported families: "
                                       f"{', '.join(FAMILIES)}") from None


def _schema(taxonomy: Taxonomy) -> list[dict[str, Any]]:
    return [{"id": f.id, "multi": f.multi, "values": list(f.value_ids)} for f in taxonomy.fields]


def layout_fingerprint(taxonomy: Taxonomy) -> str:
    """A short hash of the field/value ids in order: equal fingerprints mean equal index layouts."""
    return hashlib.sha256(json.dumps(_schema(taxonomy)).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True, eq=False)
class TagIndices:
    """Tags of a batch as tensors: local value ids (0 = unset) and the mask of slots in use."""

    values: torch.Tensor  # long (B, F, K)
    mask: torch.Tensor  # bool (B, F, K); slot 0 is always in use
    field_ids: tuple[str, ...]
    layout: str

    @property
    def batch_size(self) -> int:
        return int(self.values.shape[0])

    def _with(self, values: torch.Tensor, mask: torch.Tensor) -> "TagIndices":
        return TagIndices(values, mask, self.field_ids, self.layout)

    def to(self, device: torch.device | str) -> "TagIndices":
        return self._with(self.values.to(device), self.mask.to(device))

    def expand_to(self, batch_size: int) -> "TagIndices":
        """The same tags for `batch_size` samples (a batch of 1 broadcasts; otherwise sizes must match)."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise InvalidRequest("tags", f"{self.batch_size} tag sets were given for a batch of {batch_size} samples; "
                                         "give one tag set, or one per sample")
        shape = (batch_size, *self.values.shape[1:])
        return self._with(self.values.expand(shape), self.mask.expand(shape))

    def cat(self, other: "TagIndices") -> "TagIndices":
        if other.layout != self.layout:
            raise InvalidRequest("tags", "cannot join tag batches built for different taxonomies")
        k = max(self.values.shape[2], other.values.shape[2])
        parts = [_pad_slots(t, k) for t in (self, other)]
        return self._with(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def unset(self) -> "TagIndices":
        """The same batch with every field unset (the 'no tags' branch of tag guidance)."""
        values = torch.zeros_like(self.values[:, :, :1])
        return self._with(values, torch.ones_like(self.mask[:, :, :1]))


def _pad_slots(t: TagIndices, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    extra = k - t.values.shape[2]
    if not extra:
        return t.values, t.mask
    return F.pad(t.values, (0, extra)), F.pad(t.mask, (0, extra), value=False)


def encode_tags(taxonomy: Taxonomy, tags_batch: Sequence[Mapping[str, Any] | None] | Mapping[str, Any]) -> TagIndices:
    """Validate each sample's tags and turn the batch into index tensors (see module docstring)."""
    if isinstance(tags_batch, Mapping):
        tags_batch = [tags_batch]
    if isinstance(tags_batch, (str, bytes)) or not isinstance(tags_batch, Sequence) or not tags_batch:
        raise InvalidRequest("tags", "give a non-empty list of tag dicts (one per sample)")
    fields = taxonomy.fields
    position = [{v: i + 1 for i, v in enumerate(f.value_ids)} for f in fields]
    rows: list[list[list[int]]] = []
    for i, tags in enumerate(tags_batch):
        try:
            valid = taxonomy.validate_tags(tags)
        except InvalidRequest as exc:
            raise InvalidRequest(exc.field.replace("tags", f"tags[{i}]", 1), exc.reason) from None
        rows.append([[position[j][v] for v in valid.get(f.id, ())] or [0] for j, f in enumerate(fields)])
    k = max(len(slot) for sample in rows for slot in sample)
    values = torch.zeros(len(rows), len(fields), k, dtype=torch.long)
    mask = torch.zeros(len(rows), len(fields), k, dtype=torch.bool)
    for b, sample in enumerate(rows):
        for j, slot in enumerate(sample):
            values[b, j, : len(slot)] = torch.tensor(slot)
            mask[b, j, : len(slot)] = True
    return TagIndices(values, mask, taxonomy.field_ids, layout_fingerprint(taxonomy))


def tag_dropout(indices: TagIndices, rate: float | Mapping[str, float], generator: torch.Generator | None = None,
                *, drop_all_rate: float = 0.0) -> TagIndices:
    """Replace fields by "unset" at random for training (see module docstring).

    `rate` is one rate for every field or ``{field id: rate}`` (fields not named keep theirs);
    `drop_all_rate` unsets a whole sample, teaching the encoder the all-unset branch that tag
    guidance uses. The draw uses `generator` only, so a seeded generator repeats it exactly.
    """
    if isinstance(rate, Mapping):
        unknown = sorted(set(rate) - set(indices.field_ids))
        if unknown:
            raise InvalidRequest("tag_dropout", f"unknown field(s): {', '.join(unknown)}")
        rates = [float(rate.get(fid, 0.0)) for fid in indices.field_ids]
    else:
        rates = [float(rate)] * len(indices.field_ids)
    for r in (*rates, drop_all_rate):
        if not 0.0 <= r <= 1.0:
            raise InvalidRequest("tag_dropout", f"rates must be between 0 and 1, got {r}")
    b, f = indices.values.shape[:2]
    gen_device = generator.device if generator is not None else torch.device("cpu")
    draw = torch.rand(b, f, generator=generator, device=gen_device)
    drop = draw < torch.tensor(rates, device=gen_device)
    if drop_all_rate > 0:
        drop |= (torch.rand(b, 1, generator=generator, device=gen_device) < drop_all_rate)
    drop = drop.to(indices.values.device).unsqueeze(-1)
    first = torch.zeros_like(indices.mask)
    first[:, :, 0] = True
    values = torch.where(drop, torch.zeros_like(indices.values), indices.values)
    mask = torch.where(drop, first, indices.mask)
    return TagIndices(values, mask, indices.field_ids, indices.layout)


# ----------------------------------------------------------------------------------- encoder
@dataclass(frozen=True, eq=False)
class TagEncoderOutput:
    tokens: torch.Tensor  # (B, F, text_dim): one token per field, appended to the cross-attention context
    pooled: torch.Tensor  # (B, temb_dim): added to the timestep embedding


class TagEncoder(nn.Module):
    """PKS tags -> per-field tokens (text width) + a pooled vector (temb width); see module docstring."""

    def __init__(self, taxonomy: Taxonomy, *, text_dim: int, temb_dim: int, num_sites: int, num_heads: int,
                 family: str, hidden_dim: int = 256) -> None:
        super().__init__()
        for name, value in (("text_dim", text_dim), ("temb_dim", temb_dim), ("num_sites", num_sites),
                            ("num_heads", num_heads), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise InvalidRequest(f"tag_encoder.{name}", f"must be a positive integer, got {value!r}")
        self.taxonomy = taxonomy
        self.family = family_name(family)
        self.layout = layout_fingerprint(taxonomy)
        self.dims = {"text_dim": text_dim, "temb_dim": temb_dim, "num_sites": num_sites,
                     "num_heads": num_heads, "hidden_dim": hidden_dim}
        sizes = [len(f.values) + 1 for f in taxonomy.fields]  # +1: the field's "unset" row first
        offsets = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.long)
        self.register_buffer("offsets", offsets, persistent=False)
        self.value_table = nn.Embedding(sum(sizes), hidden_dim)
        self.field_table = nn.Embedding(len(sizes), hidden_dim)
        self.norm_mix = nn.LayerNorm(hidden_dim)
        self.mix = nn.Sequential(nn.Linear(hidden_dim, 2 * hidden_dim), nn.SiLU(),
                                 nn.Linear(2 * hidden_dim, hidden_dim))
        self.norm_tokens = nn.LayerNorm(hidden_dim)
        self.token_proj = nn.Linear(hidden_dim, text_dim)
        self.norm_pool = nn.LayerNorm(hidden_dim)
        self.pool_in = nn.Linear(hidden_dim, hidden_dim)
        self.pool_out = nn.Linear(hidden_dim, temb_dim)
        # Zero at init: the pooled vector adds exactly 0 to temb, the gates scale the tag tokens'
        # attention contribution by exactly 0, so a fresh encoder leaves the base model unchanged.
        nn.init.zeros_(self.pool_out.weight)
        nn.init.zeros_(self.pool_out.bias)
        self.gates = nn.Parameter(torch.zeros(num_sites, num_heads))

    @classmethod
    def for_transformer(cls, transformer: nn.Module, taxonomy: Taxonomy, *, hidden_dim: int = 256) -> "TagEncoder":
        """An encoder whose dims fit `transformer` (a diffusers Wan or HunyuanVideo transformer)."""
        family = family_of(transformer)
        return cls(taxonomy, family=family.key, hidden_dim=hidden_dim, **family.tag_sites.dims(transformer))

    @property
    def text_dim(self) -> int:
        return self.dims["text_dim"]

    @property
    def temb_dim(self) -> int:
        return self.dims["temb_dim"]

    def encode(self, tags: TagIndices | Sequence[Mapping[str, Any] | None] | Mapping[str, Any]) -> TagIndices:
        """Tag dicts -> indices for this encoder's taxonomy (indices are checked and passed through)."""
        indices = tags if isinstance(tags, TagIndices) else encode_tags(self.taxonomy, tags)
        if indices.layout != self.layout:
            raise InvalidRequest("tags", f"these tag indices were built for another taxonomy than the encoder's "
                                         f"(version {self.taxonomy.version}); encode them with the encoder's taxonomy")
        return indices

    def field_vectors(self, indices: TagIndices) -> torch.Tensor:
        """(B, F, hidden): pooled value rows + field embedding, after the residual MLP."""
        device = self.value_table.weight.device
        values, mask = indices.values.to(device), indices.mask.to(device)
        offsets: torch.Tensor = self.offsets  # type: ignore[assignment]  # a buffer
        rows = self.value_table(values + offsets.view(1, -1, 1))  # (B, F, K, H)
        weight = mask.unsqueeze(-1).to(rows.dtype)
        h = (rows * weight).sum(2) / weight.sum(2)  # mean over the chosen values of each field
        h = h + self.field_table.weight.unsqueeze(0)
        return h + self.mix(self.norm_mix(h))

    def forward(self, tags: TagIndices | Sequence[Mapping[str, Any] | None] | Mapping[str, Any]) -> TagEncoderOutput:
        h = self.field_vectors(self.encode(tags))
        tokens = self.token_proj(self.norm_tokens(h))
        pooled = self.pool_out(F.silu(self.pool_in(self.norm_pool(h))).mean(1))
        return TagEncoderOutput(tokens=tokens, pooled=pooled)

    def config(self) -> dict[str, Any]:
        import diffusers

        return {"format": FORMAT, "format_version": FORMAT_VERSION, "family": self.family,
                "taxonomy_version": self.taxonomy.version, "fields": _schema(self.taxonomy),
                "dims": dict(self.dims), "diffusers_version": diffusers.__version__}


# ------------------------------------------------------------------------------- checkpoints
def save_tag_encoder(encoder: TagEncoder, folder: Path | str) -> Path:
    """Write the weights (safetensors) and config (JSON) into `folder`; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    # Each file is written beside its final name and renamed, so a crash never leaves a half file.
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    write_text(folder / CONFIG_NAME, json.dumps(encoder.config(), indent=2))
    return folder


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise NotFound(f"no tag encoder in {folder} (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TagEncoderMismatch(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise TagEncoderMismatch(f"{path} is not a tag encoder config")
    if config.get("format_version") != FORMAT_VERSION:
        raise TagEncoderMismatch(f"{path} has format version {config.get('format_version')!r}; "
                                 f"this engine reads {FORMAT_VERSION}")
    return config


def _check_taxonomy(saved: list[dict[str, Any]], saved_version: str, taxonomy: Taxonomy) -> None:
    """Refuse unless `taxonomy` equals the saved one or only added values to its fields.

    Decided on content, not on the version string: rows are mapped by id, so any taxonomy that
    keeps every field and value loads correctly, bumped or not; the versions go into the reasons.
    """
    now = {f["id"]: f for f in _schema(taxonomy)}
    before = {f["id"]: f for f in saved}
    where = f"taxonomy {taxonomy.version} vs the checkpoint's {saved_version}"
    if set(now) != set(before):
        gone, new = sorted(set(before) - set(now)), sorted(set(now) - set(before))
        parts = [f"{what} field(s) {', '.join(ids)}" for what, ids in (("removed", gone), ("added", new)) if ids]
        raise TagEncoderMismatch(f"the fields differ ({'; '.join(parts)}; {where}); the encoder must be retrained")
    changed = [fid for fid in now if now[fid]["multi"] != before[fid]["multi"]]
    if changed:
        raise TagEncoderMismatch(f"single/multi select changed for {', '.join(changed)} ({where})")
    removed = [f"{fid}={v}" for fid in before for v in before[fid]["values"] if v not in now[fid]["values"]]
    if removed:
        shown = ", ".join(removed[:8]) + (", ..." if len(removed) > 8 else "")
        raise TagEncoderMismatch(f"value(s) removed or renamed: {shown} ({where}); only added values can be loaded")


def check_tag_encoder(folder: Path | str, taxonomy: Taxonomy, family: Any,
                      transformer_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Refuse an encoder that cannot drive the model, from its config alone (no weights read).

    Checks the family, the taxonomy and, given the model's transformer config.json, the layer sizes.
    Returns the encoder's config.
    """
    folder = Path(folder).expanduser()
    try:
        config = _read_config(folder)
    except NotFound as exc:
        raise TagEncoderMismatch(str(exc)) from None
    want = family_name(family)
    if config.get("family") != want:
        raise TagEncoderMismatch(f"this tag encoder was trained for the {config.get('family')!r} family; "
                                 f"the model is {want!r}")
    _check_taxonomy(config["fields"], str(config.get("taxonomy_version")), taxonomy)
    if transformer_config is not None:
        try:
            model_dims = family_of(want).tag_sites.dims_from_config(dict(transformer_config))
        except (KeyError, TypeError, ValueError):
            model_dims = None  # an unusual config: the channel checks the sizes when it attaches
        dims = config.get("dims")
        saved: dict[str, Any] = dims if isinstance(dims, dict) else {}
        wrong = {k: (saved.get(k), v) for k, v in (model_dims or {}).items() if saved.get(k) != v}
        if wrong:
            shown = ", ".join(f"{k} {a} (model: {b})" for k, (a, b) in wrong.items())
            raise TagEncoderMismatch(f"this tag encoder was built for another {want} model size: {shown}")
    return config


def load_tag_encoder(folder: Path | str, taxonomy: Taxonomy, family: Any) -> TagEncoder:
    """Load a saved encoder for `taxonomy` and base `family` (rules in the module docstring)."""
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    config = _read_config(folder)
    want = family_name(family)
    if config.get("family") != want:
        raise TagEncoderMismatch(f"this tag encoder was trained for the {config.get('family')!r} family; "
                                 f"the model is {want!r}")
    saved_fields = config["fields"]
    _check_taxonomy(saved_fields, str(config.get("taxonomy_version")), taxonomy)
    try:
        state = load_file(str(folder / WEIGHTS_NAME))
    except Exception as exc:  # safetensors raises its own error types
        raise TagEncoderMismatch(f"{folder / WEIGHTS_NAME} is not a readable safetensors file: {exc}") from None
    encoder = TagEncoder(taxonomy, family=want, **config["dims"])
    # Map saved rows onto the new layout by id: new values start from their field's "unset" row.
    old_offset, old_pos, start = {}, {}, 0
    for j, f in enumerate(saved_fields):
        old_offset[f["id"]] = start
        old_pos[f["id"]] = (j, {v: i + 1 for i, v in enumerate(f["values"])})
        start += len(f["values"]) + 1
    value_rows, field_rows = [], []
    for f in taxonomy.fields:
        j, pos = old_pos[f.id]
        field_rows.append(j)
        value_rows += [old_offset[f.id]] + [old_offset[f.id] + pos.get(v, 0) for v in f.value_ids]
    try:
        state["value_table.weight"] = state["value_table.weight"][torch.tensor(value_rows)]
        state["field_table.weight"] = state["field_table.weight"][torch.tensor(field_rows)]
        encoder.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, IndexError) as exc:
        raise TagEncoderMismatch(f"the weights in {folder} do not match their config: {exc}") from None
    return encoder
