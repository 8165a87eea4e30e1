"""The official OpenAI Python client against a running wgserve.

Run by scripts/test-openai (which starts the server):
    python tests/openai_client.py http://127.0.0.1:PORT/v1

Checks a streamed chat with usage, a whole chat, a greedy text completion
("Paris"), system_fingerprint on responses and every chunk, reasoning_tokens
(0: the default model does not reason), messages with `name` and an
assistant turn with content None, models.retrieve, and that bad requests
raise the client's own error classes. Exits non-zero on the first failure.
"""

import sys

import openai


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main(base_url):
    # No retries: a failure must show, not be papered over.
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)

    models = client.models.list().data
    check(len(models) == 1, f"one model listed: {models}")
    model = models[0].id
    print(f"model: {model}")

    messages = [{"role": "user", "content": "Describe the city of Paris in detail."}]
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=8,
        temperature=0,
    )
    text, roles, finish, usage, chunks, fingerprints = "", [], None, None, 0, set()
    for chunk in stream:
        chunks += 1
        check(chunk.object == "chat.completion.chunk", f"chunk object: {chunk}")
        fingerprints.add(chunk.system_fingerprint)
        if chunk.usage is not None:
            check(chunk.choices == [], f"the usage chunk has no choices: {chunk}")
            usage = chunk.usage
            continue
        check(usage is None, "the usage chunk comes last")
        choice = chunk.choices[0]
        if choice.delta.role:
            roles.append(choice.delta.role)
        text += choice.delta.content or ""
        if choice.finish_reason:
            finish = choice.finish_reason
    check(roles == ["assistant"], f"one role, assistant: {roles}")
    check(text.strip() != "", f"streamed text is non-empty: {text!r}")
    check(finish == "length", f"finish_reason length: {finish}")
    check(usage is not None, "usage present")
    check(usage.completion_tokens == 8, f"8 completion tokens: {usage}")
    check(usage.total_tokens == usage.prompt_tokens + 8, f"usage adds up: {usage}")
    check(
        usage.completion_tokens_details is not None
        and usage.completion_tokens_details.reasoning_tokens == 0,
        f"reasoning_tokens 0 for a model that does not reason: {usage}",
    )
    check(len(fingerprints) == 1 and None not in fingerprints, f"one fingerprint on every chunk: {fingerprints}")
    fingerprint = fingerprints.pop()
    print(f"chat stream ok: {chunks} chunks, {text!r}, {usage.prompt_tokens}+{usage.completion_tokens} tokens")

    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
    check(whole.choices[0].message.role == "assistant", f"role: {whole}")
    check(whole.choices[0].message.content == text, f"greedy whole == streamed: {whole.choices[0].message.content!r} vs {text!r}")
    check(whole.choices[0].finish_reason == "length", f"finish: {whole}")
    check(whole.system_fingerprint == fingerprint, f"fingerprint {whole.system_fingerprint} == {fingerprint}")
    check(whole.usage.completion_tokens_details.reasoning_tokens == 0, f"reasoning_tokens: {whole.usage}")
    print(f"chat ok (system_fingerprint {fingerprint})")

    # What OpenAI's clients send back after a tool call: named participants
    # and an assistant turn whose content is None.
    named = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are brief.", "name": "rules"},
            {"role": "user", "content": "Greet Ann.", "name": "bob"},
            {"role": "assistant", "content": None, "name": "helper"},
            {"role": "user", "content": "Now greet me.", "name": "bob"},
        ],
        max_tokens=2,
        temperature=0,
    )
    check(named.usage.completion_tokens == 2, f"names and content None accepted: {named}")
    print("messages with name and assistant content None ok")

    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": None}], max_tokens=2)
        raise AssertionError("a user message with content None was accepted")
    except openai.BadRequestError as e:
        check(e.param == "messages[0].content", f"names messages[0].content: {e.param} ({e})")
    print("user content None raises BadRequestError ok")

    done = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=4, temperature=0
    )
    choice = done.choices[0]
    check(choice.text.startswith(" Paris"), f"text starts with ' Paris': {choice.text!r}")
    check(choice.finish_reason == "length", f"finish_reason length: {choice.finish_reason}")
    check(done.usage is not None and done.usage.completion_tokens == 4, f"usage: {done.usage}")
    check(done.system_fingerprint == fingerprint, f"completion fingerprint: {done.system_fingerprint}")
    streamed = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=2, temperature=0, stream=True
    )
    prints = {chunk.system_fingerprint for chunk in streamed}
    check(prints == {fingerprint}, f"completion chunks' fingerprints: {prints}")
    print(f"completion ok: {choice.text!r}")

    try:
        client.chat.completions.create(model=model, messages=messages, max_tokens=0)
        raise AssertionError("max_tokens=0 was accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"status 400: {e.status_code}")
        check(e.param == "max_tokens", f"names max_tokens: {e.param} ({e})")
    print("max_tokens=0 raises BadRequestError ok")

    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        check(e.code == "model_not_found", f"code model_not_found: {e.code} ({e})")
    print("unknown model raises NotFoundError ok")

    card = client.models.retrieve(model)
    check(card.id == model, f"models.retrieve gives the model: {card}")
    try:
        client.models.retrieve("no-such-model")
        raise AssertionError("models.retrieve of an unknown id succeeded")
    except openai.NotFoundError:
        pass
    print("models.retrieve ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: openai_client.py BASE_URL (e.g. http://127.0.0.1:8080/v1)")
    main(sys.argv[1])
