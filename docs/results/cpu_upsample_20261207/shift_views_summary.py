"""Summary of shift_views.py JSONs: organ and lesion Dice and firings without -> with the views."""
import json, sys, numpy as np
for f in sys.argv[1:]:
    rows = json.load(open(f))
    org = [r for r in rows if r['label'] not in ('liver lesion', 'kidney cyst') and r['present']]
    les = [r for r in rows if r['label'] in ('liver lesion', 'kidney cyst') and r['present']]
    ab = [r for r in rows if r['label'] in ('liver lesion', 'kidney cyst') and not r['present']]
    print(f, 'organ %.4f -> %.4f' % (np.mean([r['base'] for r in org]), np.mean([r['tta'] for r in org])),
          'lesion %.4f -> %.4f (n %d)' % (np.mean([r['base'] for r in les]), np.mean([r['tta'] for r in les]), len(les)),
          'firings %d -> %d of %d' % (sum(r['base_found'] for r in ab), sum(r['tta_found'] for r in ab), len(ab)),
          'organ absent (missed) %d -> %d' % (sum(not r['base_found'] for r in org), sum(not r['tta_found'] for r in org)))
    for r in les: print('   ', r['case'][-4:], r['label'][:6], round(r['base'],3), round(r['tta'],3), round(r['base_u'],3), round(r['tta_u'],3))
