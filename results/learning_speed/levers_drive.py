"""The lever runs of results/learning_speed.md: a queue of stage-1 recipes, one `name key=value ...`
line each, trained one after another into runs/levers/<name>; each result appended to a JSONL.

On a checkout of the commit named in levers.patch, with that patch applied (its switches are
the levers; none was adopted but the memory read and the linear route, now in the code):
    python results/learning_speed/levers_drive.py QUEUE results.jsonl    # two at a time: two lanes
"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import torch
from dataclasses import asdict, fields
from config import Config, check
from train_pfp import train

queue, results = sys.argv[1], sys.argv[2]
types = {f.name: f.type for f in fields(Config)}
for line in open(queue):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name, *pairs = line.split()
    if os.path.exists(os.path.join("runs/levers", name, "summary.json")):
        continue
    over = {}
    for p in pairs:
        k, v = p.split("=")
        t = types[k]
        over[k] = (v.lower() in ("1", "true")) if t is bool else t(v)
    cfg = check(Config(**{"threads": 1, "ckpt_every": 100000, "log_every": 50, **over}))
    out = os.path.join("runs/levers", name)
    t0 = time.time()
    s = train(cfg, out, quiet=True, overwrite=True)
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    curve = [(r["step"], r.get("train_seconds"), round(r["val"]["psnr"], 2), round(r["val"]["psnr_mean"], 2)) for r in rows if "val" in r]
    rec = {"name": name, "over": over, "psnr": round(s["psnr"], 2), "psnr_mean": round(s["psnr_mean"], 2),
           "thirds": [round(s[f"psnr_{k}"], 2) for k in ("first", "middle", "last")],
           "no_network": {k: round(v, 2) for k, v in s["no_network"].items()},
           "train_seconds": round(s["train_seconds"], 1), "wall": round(time.time() - t0, 1), "curve": curve}
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)
