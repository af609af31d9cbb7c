"""Round 2: one pool of candidates per item (8 sampled + the scripted lines that passed), re-ranked offline
with several settings, written as one blind sheet. Usage: pools.py OUT N_ITEMS SEED"""
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
import django; django.setup()
import torch
from data.corpus import find_transcripts
from data.pipeline import read_transcripts
from inference.replier import ReplyRequest, Turn
from inference.selection import RankWeights, rejection, length_score
from inference.systems import build_system
from training.blind import pick_items, write_sheet, ScriptedSystem

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
transcripts = find_transcripts()[0]
items = pick_items(read_transcripts(transcripts), n, seed)
system = build_system("candidates=8,scripted=5,threshold=0.5", transcripts)
replier = system.replier()
torch.manual_seed(seed)
requests = [ReplyRequest([Turn("bot" if s == "Sheldon" else "user", t) for s, t in it.context], it.line[1]) for it in items]
pools = []
for start in range(0, len(requests), 8):
    chunk = requests[start:start + 8]
    batch = replier.open_batch(); batch.add(replier.prepare(chunk, 8))
    done = {}
    while batch:
        done.update((id(r), reply) for r, reply in batch.step())
    for r in chunk:
        reply = done[id(r)]
        pools.append([{"text": c.text, "source": c.source, "rejected": c.rejected,
                       "sim": c.scores["selector"], "lp": c.mean_log_probability,
                       "len": length_score(c.text)} for c in reply.candidates])
    print(f"{len(pools)}/{len(items)} items", flush=True)
json.dump(pools, open(out + ".pools.json", "w"), indent=1)

def choose(pool, n_generated, fluency, length, scripted_lp=-1.5, bonus=0.0, use_scripted=True):
    generated = [c for c in pool if c["source"] == "generated"][:n_generated]
    scripted = [c for c in pool if c["source"] == "scripted"] if use_scripted else []
    cands = generated + scripted
    def score(c):
        lp = c["lp"] if c["lp"] is not None else scripted_lp
        return c["sim"] + fluency * lp + length * c["len"] + (bonus if c["source"] == "scripted" else 0)
    allowed = [c for c in cands if not c["rejected"]] or [c for c in cands if c["rejected"] != "content"]
    return max(allowed, key=score)["text"] if allowed else ""

variants = {
    "r4": dict(n_generated=4, fluency=0.1, length=0.03),
    "r8": dict(n_generated=8, fluency=0.1, length=0.03),
    "r8fluent": dict(n_generated=8, fluency=0.3, length=0.03),
    "r8scripted": dict(n_generated=8, fluency=0.1, length=0.03, bonus=0.1),
}
replies = {"scripted": ScriptedSystem().replies(items)}
for name, kw in variants.items():
    replies[name] = [choose(p, **kw) for p in pools]
write_sheet(out, items, replies, seed, about={"pools": "8 sampled + scripted, threshold 0.5", "variants": variants})
print("written", out)
