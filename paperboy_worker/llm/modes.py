"""The two ways of asking a provider for structured output: chat completions and OpenAI's
Responses API. Each turns its answer into one `Completion`, so the writer reads both alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import openai
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from paperboy_worker.llm.prompts import Prompt

ApiMode = Literal["chat", "responses"]


@dataclass(frozen=True)
class Completion:
    """What came back: the answer's text, a refusal, whether the budget cut it short, usage."""

    content: str | None
    refusal: str | None = None
    truncated: bool = False  # the completion budget ran out before the answer was done
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    from_reasoning: bool = False  # the answer was read from `reasoning_content`


class Mode(Protocol):
    async def complete(
        self, client: openai.AsyncOpenAI, model: str, prompt: Prompt[Any]
    ) -> Completion:
        """Send `prompt` to `model`; raises `openai.APIError` as the SDK does."""


class ChatMode:
    """`POST /chat/completions` with `response_format` json_schema (OpenAI, Fireworks, vLLM...)."""

    async def complete(
        self, client: openai.AsyncOpenAI, model: str, prompt: Prompt[Any]
    ) -> Completion:
        response = await client.chat.completions.create(
            model=model,
            messages=prompt.messages,
            response_format=prompt.response_format(),
            max_tokens=prompt.max_tokens,
        )
        return chat_completion(response)


class ResponsesMode:
    """`POST /responses` with `text.format` json_schema, the old service's default mode."""

    async def complete(
        self, client: openai.AsyncOpenAI, model: str, prompt: Prompt[Any]
    ) -> Completion:
        response = await client.responses.create(
            model=model,
            instructions=prompt.instructions(),
            input=prompt.user_input(),
            text={"format": prompt.text_format()},
            max_output_tokens=prompt.max_tokens,
            store=False,
        )
        return responses_completion(response)


MODES: dict[ApiMode, Mode] = {"chat": ChatMode(), "responses": ResponsesMode()}


def chat_completion(response: ChatCompletion) -> Completion:
    usage = response.usage
    tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (None, None)
    if not response.choices:
        return Completion(None, prompt_tokens=tokens[0], completion_tokens=tokens[1])
    choice = response.choices[0]
    content, from_reasoning = choice.message.content, False
    if not (content and content.strip()):
        # Reasoning models behind some providers leave `content` empty and put everything,
        # the answer included, in this field, which the SDK keeps as an extra.
        reasoning = (choice.message.model_extra or {}).get("reasoning_content")
        if isinstance(reasoning, str) and reasoning.strip():
            content, from_reasoning = json_object_in(reasoning), True
    return Completion(
        content,
        refusal=choice.message.refusal,
        truncated=choice.finish_reason == "length",
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        from_reasoning=from_reasoning,
    )


def responses_completion(response: Response) -> Completion:
    usage = response.usage
    refusals = [
        part.refusal
        for item in response.output
        if item.type == "message"
        for part in item.content
        if part.type == "refusal"
    ]
    details = response.incomplete_details
    return Completion(
        response.output_text or None,
        refusal=refusals[0] if refusals else None,
        truncated=details is not None and details.reason == "max_output_tokens",
        prompt_tokens=usage.input_tokens if usage else None,
        completion_tokens=usage.output_tokens if usage else None,
    )


def json_object_in(text: str) -> str:
    """The outermost `{...}` in `text` (reasoning tends to wrap the answer in prose), else
    `text` itself, for the validator to refuse."""
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text
