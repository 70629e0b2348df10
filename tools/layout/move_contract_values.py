"""Move Phase and OptimizerGroup (values of the family contract) from training/engine.py to families/base.py."""
from pathlib import Path
import re
eng=Path('gmdrit_cli/training/engine.py'); s=eng.read_text()
a=s.index('@dataclass(frozen=True)\nclass Phase:'); b=s.index('@dataclass(frozen=True)\nclass PhaseSpan:')
phase=s[a:b]; s=s[:a]+s[b:]
a=s.index('@dataclass\nclass OptimizerGroup:'); b=s.index('def like_param(')
og=s[a:b]; s=s[:a]+s[b:]
s=s.replace('''if TYPE_CHECKING:
    from ..config.schema import Config
    from ..families.base import ModelFamily''','''from ..families.base import OptimizerGroup, Phase  # noqa: F401  (values of the family contract the engine runs)

if TYPE_CHECKING:
    from ..config.schema import Config
    from ..families.base import ModelFamily''')
if 'field(' not in s:
    s=s.replace('from dataclasses import dataclass, field\n','from dataclasses import dataclass\n')
eng.write_text(s)
base=Path('gmdrit_cli/families/base.py'); t=base.read_text()
t=t.replace('''from ..training.engine import OptimizerGroup, Phase

if TYPE_CHECKING:''','''if TYPE_CHECKING:''')
t=t.replace('''Attributes = tuple[torch.Tensor, torch.Tensor]  # (z N x nz, condition N x D)
''','''Attributes = tuple[torch.Tensor, torch.Tensor]  # (z N x nz, condition N x D)


'''+og.rstrip()+'\n\n\n'+phase.rstrip()+'\n',1)
if 'from dataclasses import dataclass, field' not in t:
    t=t.replace('from dataclasses import dataclass\n','from dataclasses import dataclass, field\n')
base.write_text(t)
for p in list(Path('gmdrit_cli').rglob('*.py'))+list(Path('tests').glob('*.py')):
    s=p.read_text(); o=s
    def fix(m):
        indent, mod, names = m.group(1), m.group(2), m.group(3)
        items=[x.strip() for x in names.split(',')]
        moved=[x for x in items if x in ('OptimizerGroup','Phase')]
        if not moved: return m.group(0)
        rest=[x for x in items if x not in moved]
        basemod = mod.replace('training.engine','families.base')
        if p.parts[:2]==('gmdrit_cli','families'):
            depth=len(p.parts)-3
            basemod = '.base' if depth==0 else '..base'
        out=[]
        if rest: out.append(f"{indent}from {mod} import {', '.join(rest)}")
        out.append(f"{indent}from {basemod} import {', '.join(moved)}")
        return '\n'.join(out)
    s=re.sub(r'^(\s*)from ([\w.]*training\.engine) import ([\w, ]+)$',fix,s,flags=re.M)
    if s!=o: p.write_text(s); print('fixed',p)
