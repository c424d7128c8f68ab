import pstats, sys
p = pstats.Stats(sys.argv[1]); st = p.stats
tot = max(v[3] for v in st.values())
print("== cumulative >= 0.15 s (nli_qlora, torch.cuda, peft, metadata, custom_ops)")
rows = sorted(st.items(), key=lambda kv: -kv[1][3])
for f, v in rows:
    if v[3] >= 0.15 and any(s in f[0] for s in ("nli_qlora", "cuda", "peft/", "metadata", "custom_ops", "safetensors", "modeling_utils", "bitsandbytes")):
        print(f"{v[3]:7.3f} {v[2]:7.3f} {v[1]:6d} {f[0].split('site-packages/')[-1]}:{f[1]}({f[2]})")
def callers(pred, n=6):
    for f, v in st.items():
        if pred(f):
            print("##", f[0].split('site-packages/')[-1], f[2], v[1], round(v[2], 3), round(v[3], 3))
            for c, w in sorted(v[4].items(), key=lambda kv: -kv[1][3])[:n]:
                print("   <-", c[0].split('site-packages/')[-1], c[1], c[2], w[1], round(w[3], 3))
callers(lambda f: f[2] == "_register_to_dispatcher")
callers(lambda f: f[2] == "_lazy_init" and "cuda" in f[0])
print("== callees of cuda _lazy_init")
for f, v in st.items():
    for c, w in v[4].items():
        if c[2] == "_lazy_init" and "cuda/__init__" in c[0] and w[3] > 0.02:
            print(f"   -> {w[3]:.3f} {f[0].split('site-packages/')[-1]}:{f[1]}({f[2]})")
print("== tottime top 15")
for f, v in sorted(st.items(), key=lambda kv: -kv[1][2])[:15]:
    print(f"{v[2]:7.3f} {v[1]:7d} {f[0].split('site-packages/')[-1]}:{f[1]}({f[2]})")
