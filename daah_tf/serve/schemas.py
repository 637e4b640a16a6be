"""Request and response bodies. Unknown fields are refused (extra="forbid"), so a typo such as
"txt" gets a 422 naming it instead of being silently ignored."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

MAX_K = 100
MAX_TEXT_CHARS = 2000
MAX_VECTOR_VALUES = 100_000
MAX_PREDICT_INSTANCES = 64

Modality = Literal["image", "text"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextQuery(_Strict):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="raw query text")
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="number of hits")
    target: Modality = Field("image", description="the index searched")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value):
        if not value.strip():
            raise ValueError("text is blank (only whitespace)")
        return value


class VectorQuery(_Strict):
    vector: list[float] = Field(min_length=1, max_length=MAX_VECTOR_VALUES)
    modality: Modality | None = Field(None, description="what the vector is (default: by length)")
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    target: Modality | None = Field(None, description="default: the other modality")


class Hit(BaseModel):
    rank: int
    id: int
    distance: int = Field(description="Hamming distance to the query code")
    text: str | None = None
    image: str | None = Field(None, description="image file name (folder datasets)")
    labels: list[str] = []
    thumbnail: str | None = Field(None, description="URL of the item's picture, if any")


class SearchResponse(BaseModel):
    query: str
    query_modality: Modality
    target: Modality
    bits: int
    index_items: int
    took_ms: float
    hits: list[Hit]


class PredictRequest(_Strict):
    """TF Serving's REST predict body (row format)."""

    signature_name: str = "encode_text"
    instances: list = Field(min_length=1, max_length=MAX_PREDICT_INSTANCES)


class PredictResponse(BaseModel):
    predictions: list[dict]
