"""Chat with any model of the chain in the terminal; the answer streams token by token.

python -m stages.chat            (default: --model-dir models/koblla-instruct, the last model of the chain)

Type a message and press Enter; `/reset` starts a new conversation, `/exit` (or Ctrl-D) quits. Lines piped on stdin
are the user turns of one conversation:
  echo "안녕, 너는 누구야?" | python -m stages.chat --model-dir models/koblla-instruct
Uses the folder's chat template, or Llama 3's when it has none (base models), so every model can be compared on the
same conversation. Defaults come from params.yaml `evaluate.chat` (max_new_tokens, temperature, top_p,
system_prompt) and `evaluate.device` / `evaluate.dtype`; the flags override them. Not a DVC stage.
"""
import sys

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--model-dir", default="models/koblla-instruct",
                   help="Hugging Face model folder, any model of the chain (default: models/koblla-instruct)")
    p.add_argument("--system", default=None, help="system prompt (default: evaluate.chat.system_prompt)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens per answer")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: evaluate.device)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    params = load_section("evaluate", a.params)
    c = params.chat

    from koblla.chat import Chat
    from koblla.evaluate.modeldir import check_model_dir, load_model

    check_model_dir(a.model_dir, "base")
    model, tokenizer = load_model(a.model_dir, a.device or params.device, a.dtype or params.dtype)
    chat = Chat(
        model, tokenizer,
        system_prompt=c.system_prompt if a.system is None else a.system,
        max_new_tokens=a.max_new_tokens or c.max_new_tokens,
        temperature=c.temperature if a.temperature is None else a.temperature,
        top_p=c.top_p if a.top_p is None else a.top_p,
    )
    if not chat.own_template:
        print(f"({a.model_dir} has no chat template: using Llama 3's)", file=sys.stderr)
    interactive = sys.stdin.isatty()
    turns = 0
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            break
        text = line.strip()
        if not text:
            continue
        if text == "/reset":
            chat.reset()
            print("(new conversation)", file=sys.stderr)
            continue
        if interactive:
            print("assistant> ", end="", file=sys.stderr, flush=True)
        chat.reply(text, on_text=lambda s: print(s, end="", flush=True))
        print(flush=True)
        turns += 1
    print(f"chat: {turns} turn(s)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_stage(main))
