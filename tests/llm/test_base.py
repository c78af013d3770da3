import pytest

from llmnas_local.llm import BackendError, BaseBackend, Completion, Constraint, Generation, create_backend


def test_constraint_takes_exactly_one():
    with pytest.raises(ValueError):
        Constraint()
    with pytest.raises(ValueError):
        Constraint(grammar='root ::= "a"', json_schema={"type": "string"})
    with pytest.raises(ValueError):
        Constraint(grammar="  ")
    g, j = Constraint(grammar='root ::= "a"'), Constraint(json_schema={"b": 1, "a": 2})
    assert (g.kind, j.kind) == ("grammar", "json_schema")
    assert j.key == Constraint(json_schema={"a": 2, "b": 1}).key      # canonical: key order does not matter
    assert hash(g) == hash(Constraint(grammar='root ::= "a"'))


def test_backend_error_is_one_line():
    assert str(BackendError("server died:\n  Traceback\n\tline")) == "server died: Traceback line"


class EchoBackend(BaseBackend):
    name = "echo"

    def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        self.seen = dict(temperature=temperature, top_p=top_p)
        return [Generation([Completion(p[-1]["content"], 1, "stop")] * n, len(p), 0.0) for p in prompts]


def test_generate_validates_and_keeps_order():
    with EchoBackend("m", defaults={"temperature": 0.3}) as b:
        out = b.generate([[{"role": "user", "content": str(i)}] for i in range(5)], n=2)
        assert [g.texts for g in out] == [[str(i)] * 2 for i in range(5)]
        assert b.seen == {"temperature": 0.3, "top_p": 0.95}             # registry defaults when not given
        assert b.generate([]) == []
        for bad in (dict(n=0), dict(max_tokens=0), dict(temperature=-1), dict(top_p=0)):
            with pytest.raises(ValueError):
                b.generate([[{"role": "user", "content": "x"}]], **bad)
        with pytest.raises(ValueError):
            b.generate(["not a chat"])
        with pytest.raises(ValueError):
            b.generate([[{"role": "user"}]])
        with pytest.raises(TypeError):
            b.generate([[{"role": "user", "content": "x"}]], 'root ::= "a"')
        with pytest.raises(BackendError, match="cannot sample distinct completions"):
            b.generate([[{"role": "user", "content": "x"}]], n=2, distinct=True)


def test_create_backend_rejects_unknown_kind_and_openai_without_url():
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("llamafile")
    with pytest.raises(BackendError, match="--llm-url"):
        create_backend("openai", model="smollm2")
