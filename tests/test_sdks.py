"""Issue: fusion on all three wire APIs, through the official SDKs, stream and not."""

import anthropic
import openai
import pytest

SYSTEM = "Answer in one sentence."
QUESTION = "Why is the sky blue?"


@pytest.fixture
def oai(envoy):
    return openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def ant(envoy):
    return anthropic.Anthropic(base_url=envoy.url, api_key="sk-ant-test", max_retries=0)


def turn_usage(mock):
    calls = mock.calls()
    assert len(calls) == 5, [c["model"] for c in calls]  # 3 panel, judge, outer
    return (sum(c["usage"]["input_tokens"] for c in calls), sum(c["usage"]["output_tokens"] for c in calls))


def check_run(mock, fusion):
    assert [m["status"] for m in fusion["panel"]] == ["ok"] * 3
    assert fusion["analysis"] is True and fusion["judge"]["model"] == "mock-judge"
    outer = mock.calls()[-1]
    assert outer["model"] == "mock-outer"


def test_chat_completions(oai, mock):
    r = oai.chat.completions.create(model="fusion", messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}])
    assert r.model == "mock-outer"
    assert r.choices[0].message.content.startswith("mock-outer final answer.")
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == turn_usage(mock)
    check_run(mock, r.model_extra["fusion"])


def test_chat_completions_stream(oai, mock):
    stream = oai.chat.completions.create(
        model="fusion", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("mock-outer final answer.")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == turn_usage(mock)
    fusion = [c.model_extra["fusion"] for c in chunks if "fusion" in (c.model_extra or {})]
    assert len(fusion) == 1
    check_run(mock, fusion[0])


def test_responses(oai, mock):
    r = oai.responses.create(model="fusion", instructions=SYSTEM, input=QUESTION)
    assert r.status == "completed"
    assert r.model == "mock-outer"
    assert r.output_text.startswith("mock-outer final answer.")
    assert (r.usage.input_tokens, r.usage.output_tokens) == turn_usage(mock)
    # The answer is the only output item (SDKs and frameworks reject unknown ones);
    # the fusion call's result is in the `fusion` extension object.
    assert [item.type for item in r.output] == ["message"]
    assert r.model_extra["fusion"]["tool_result"]["status"] == "ok"
    check_run(mock, r.model_extra["fusion"])
    # The panel got the instructions as the system prompt.
    assert mock.calls()[0]["body"]["messages"][0] == {"role": "system", "content": SYSTEM}


def test_responses_stream(oai, mock):
    events = list(oai.responses.create(model="fusion", instructions=SYSTEM, input=QUESTION, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("mock-outer final answer.")
    final = events[-1].response
    assert final.output_text == text
    assert (final.usage.input_tokens, final.usage.output_tokens) == turn_usage(mock)
    check_run(mock, final.model_extra["fusion"])


def test_messages(ant, mock):
    m = ant.messages.create(model="fusion", max_tokens=512, system=SYSTEM,
                            messages=[{"role": "user", "content": QUESTION}])
    assert m.model == "mock-outer"
    assert m.stop_reason == "end_turn"
    # The content carries the answer alone; the fusion call's result is in `fusion`.
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text.startswith("mock-outer final answer.")
    assert m.model_extra["fusion"]["tool_result"]["status"] == "ok"
    assert (m.usage.input_tokens, m.usage.output_tokens) == turn_usage(mock)
    check_run(mock, m.model_extra["fusion"])


def test_messages_stream(ant, mock):
    with ant.messages.stream(model="fusion", max_tokens=512, system=SYSTEM,
                             messages=[{"role": "user", "content": QUESTION}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("mock-outer final answer.")
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == turn_usage(mock)


def test_messages_declared_tool_auto(ant, mock):
    m = ant.messages.create(model="mock-outer", max_tokens=512,
                            tools=[{"type": "fusion", "panel": [{"model": "mock-a"}, {"model": "mock-b"}]}],
                            messages=[{"role": "user", "content": QUESTION}])
    assert [b.type for b in m.content] == ["text"]
    assert m.model_extra["fusion"]["mode"] == "auto"
    assert m.model_extra["fusion"]["call_id"]
    assert [c["model"] for c in mock.calls()][:1] == ["mock-outer"]
    assert sorted(c["model"] for c in mock.calls()[1:3]) == ["mock-a", "mock-b"]


def test_errors_in_native_shape(oai, ant, mock):
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="fusion", input=QUESTION, tools=[{"type": "fusion", "panel": []}])
    assert "is empty" in e.value.body["message"]
    with pytest.raises(anthropic.BadRequestError) as e:
        ant.messages.create(model="fusion", max_tokens=10, messages=[{"role": "user", "content": QUESTION}],
                            tools=[{"type": "fusion", "judge": 3}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "judge" in e.value.body["error"]["message"]


def test_stream_relays_the_final_answer_as_it_is_produced(envoy, mock):
    """The final answer goes up the request's own route: the first bytes reach the
    client while the outer model is still writing (the mock streams slowly)."""
    import json
    import time

    import httpx

    mock.script({"mock-outer": "chunk_delay=60"})
    body = {"model": "fusion", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": QUESTION}]}
    first_ms = None
    events = []
    with httpx.stream("POST", f"{envoy.url}/v1/chat/completions", json=body,
                      headers={"x-client-marker": "route"}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                events.append(data)
                continue
            chunk = json.loads(data)
            if first_ms is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first_ms = time.time() * 1000
            events.append(chunk)
    outer = mock.calls()[-1]
    assert outer["model"] == "mock-outer" and outer["body"]["stream"] is True
    # It came up the route (the client's own headers travel with it), not as a callout.
    assert outer["headers"].get("x-client-marker") == "route"
    assert outer["headers"]["x-fusion-depth"] == "1"
    assert first_ms is not None and first_ms < outer["end_ms"] - 200, "first bytes before the final call finished"
    assert events[-1] == "[DONE]"
    usage = events[-2]["usage"]
    calls = mock.calls()
    assert usage["prompt_tokens"] == sum(c["usage"]["input_tokens"] for c in calls)
    assert usage["completion_tokens"] == sum(c["usage"]["output_tokens"] for c in calls)
    fusion = [e["fusion"] for e in events[:-1] if "fusion" in e]
    assert len(fusion) == 1 and fusion[0]["analysis"] is True
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
    assert text.startswith("mock-outer final answer.")
