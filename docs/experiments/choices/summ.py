import json, sys, math
r = json.load(open(sys.argv[1])); pp = json.load(open(sys.argv[1].replace('.json', '.per-photo.json')))
print('photos', r['photos'], 'oracle chose', r['oracle chose'])
for k in ['h0 @0','h1 @0','h2 @0','h3 @0','h4 @0','oracle @0']:
    print(f"{k:22s} {r[k][0]:.2f} / {r[k][1]:.2f}")
for name in ['shipped', 'mix-5', 'mix-10', 'mix-20']:
    row = []
    for c in ['@0','@1','@2','@5','@10',' person @1',' person @2',' person @5']:
        key = name + (c if c.startswith(' ') else ' ' + c)
        v = r[key]; d = ''
        if name != 'shipped':
            a = pp[key]; b = pp['shipped' + (c if c.startswith(' ') else ' ' + c)]
            diff = [x - y for x, y in zip(a, b)]; m = sum(diff)/len(diff)
            se = math.sqrt(sum((x-m)**2 for x in diff)/(len(diff)-1)/len(diff))
            d = f" ({m:+.2f}±{se:.2f})"
        row.append(f"{v[0]:.2f}/{v[1]:.2f}{d}")
    print(f"{name:8s}", ' | '.join(row))
