"""The participant's pages: consent and instructions, one question at a time, thanks, errors.

Self-contained HTML (inline CSS and a few lines of script, allowed by a per-response CSP nonce;
nothing fetched from elsewhere). The form works without the script; the script only highlights
the chosen cards and stops a double click from sending twice. Autoescaped throughout.
"""

from __future__ import annotations

import functools

import jinja2
from markupsafe import Markup

LIKERT_LABELS = (
    (1, "Not confident at all"),
    (2, "Slightly confident"),
    (3, "Somewhat confident"),
    (4, "Fairly confident"),
    (5, "Very confident"),
)

CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:17px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1b1b;background:#f4f5f7}
main{max-width:1120px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:.2em 0 .5em}
.panel{background:#fff;border-radius:12px;padding:18px 20px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.topbar{display:flex;align-items:center;gap:14px;margin:0 0 14px}
.topbar .count{font-weight:600;white-space:nowrap}
progress{flex:1;height:10px;accent-color:#0b5cad}
.layout{display:grid;grid-template-columns:300px 1fr;gap:20px;align-items:start}
.probe{position:sticky;top:12px;text-align:center}
.probe img{display:block;margin:0 auto;width:100%;height:auto;max-width:300px;aspect-ratio:1;object-fit:cover;border-radius:10px;border:3px solid #0b5cad;background:#ddd}
.probe p{margin:.4em 0 0;font-weight:600}
fieldset{border:0;margin:0 0 18px;padding:0;min-width:0}
legend{font-weight:700;font-size:1.1rem;margin-bottom:8px;padding:0}
.cands{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:12px}
.card{position:relative;display:flex;flex-direction:column;align-items:center;gap:6px;padding:8px;border:2px solid #c9ced6;border-radius:12px;background:#fff;cursor:pointer;min-height:48px}
.card img{display:block;width:100%;height:auto;aspect-ratio:1;object-fit:cover;border-radius:8px;background:#ddd}
.card input{position:absolute;opacity:0;width:1px;height:1px}
.card span{font-weight:600}
.card.none{justify-content:center;font-size:1.05rem;text-align:center}
.card:hover{border-color:#6b8fbf}
.card:focus-within{outline:3px solid #f0b400;outline-offset:2px}
.card:has(input:checked),.card.checked{border-color:#0b5cad;background:#e8f1fb;box-shadow:0 0 0 2px #0b5cad}
.likert{display:grid;grid-template-columns:repeat(5,minmax(0,1fr));gap:8px}
.likert .card{padding:10px 6px;text-align:center;font-size:.95rem;justify-content:center}
.likert .card b{font-size:1.2rem}
button{font:inherit;font-weight:700;font-size:1.1rem;color:#fff;background:#0b5cad;border:0;border-radius:10px;padding:14px 28px;min-height:52px;cursor:pointer;width:100%}
button:disabled{background:#8aa5c4;cursor:default}
.muted{color:#5a6270}
.small{font-size:.9rem}
ul.steps li{margin:.3em 0}
.agree{display:flex;gap:12px;align-items:flex-start;margin:16px 0;font-weight:600;cursor:pointer}
.agree input{width:26px;height:26px;flex:none;margin:0}
@media (max-width:760px){
  body{font-size:16px}
  main{padding:10px}
  .layout{grid-template-columns:1fr;gap:12px}
  .probe{position:static}
  .panel{padding:12px}
  .probe{padding:12px}
  .probe img{max-width:180px}
  .cands{gap:8px}
  .card{padding:5px}
  .likert{grid-template-columns:1fr;gap:6px}
  .likert .card{flex-direction:row;justify-content:flex-start;gap:12px;padding:10px 14px;text-align:left}
}
"""

SCRIPT = """
(function(){
  var form=document.querySelector('form[data-answer]');
  if(!form)return;
  function mark(){form.querySelectorAll('label.card').forEach(function(l){var i=l.querySelector('input');l.classList.toggle('checked',!!(i&&i.checked));});}
  form.addEventListener('change',mark);mark();
  form.addEventListener('submit',function(){var b=form.querySelector('button');setTimeout(function(){b.disabled=true;b.textContent='Saving…';},0);});
})();
"""

BASE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title>
<style nonce="{{ csp_nonce }}">{{ css }}</style></head>
<body><main>{% block body %}{% endblock %}</main>
<script nonce="{{ csp_nonce }}">{{ script }}</script></body></html>
"""

CONSENT = """{% extends "base" %}{% block body %}
<div class="panel">
<h1>Can you recognise a face?</h1>
<p>This short study asks whether people can recognise someone from a face that a computer drew from a stored face template. Your answers help measure how much such templates reveal about the people they belong to.</p>
<ul class="steps">
  <li>You will see {{ total }} questions, one at a time. Each shows a face at the top and {{ k }} photos of people.</li>
  <li>Pick the photo that shows <strong>the same person</strong> as the face at the top, or <strong>None of these</strong> if you think nobody matches.</li>
  <li>Then say how confident you are, from <em>not confident at all</em> to <em>very confident</em>, and press <strong>Next</strong>.</li>
  <li>The face at the top may look blurred or unusual: it was drawn by a computer. A few questions check attention: their face is a real photo.</li>
  <li>There is no time limit, and you cannot go back. If you close this page, the same link brings you back to where you stopped.</li>
</ul>
<p class="small muted">What is kept: your choices, your confidence, and how long each question took, under the code in your link. No name, e-mail or other detail about you is asked for or stored. The photos show real people: please do not save, copy or share them. Taking part is voluntary; you may stop at any time.</p>
<form method="post" action="/s/{{ token }}/consent">
<input type="hidden" name="nonce" value="{{ nonce }}">
<label class="agree"><input type="checkbox" name="consent" value="yes" required> I have read this and agree to take part.</label>
<button type="submit">Start</button>
</form>
</div>
{% endblock %}"""

QUESTION = """{% extends "base" %}{% block body %}
<div class="topbar"><span class="count">Question {{ number }} of {{ total }}</span><progress max="{{ total }}" value="{{ number - 1 }}" aria-label="progress">{{ number - 1 }} of {{ total }} answered</progress></div>
<form method="post" action="/s/{{ token }}/answer" data-answer class="layout">
<input type="hidden" name="nonce" value="{{ nonce }}">
<input type="hidden" name="question" value="{{ question }}">
<div class="probe panel"><img src="/s/{{ token }}/img/{{ probe }}" alt="The face to match" width="300" height="300"><p>Who is this?</p></div>
<div class="panel">
<fieldset><legend>Which photo shows the same person?</legend>
<div class="cands">
{% for image in candidates %}<label class="card"><input type="radio" name="choice" value="{{ loop.index }}" required><img src="/s/{{ token }}/img/{{ image }}" alt="Photo {{ loop.index }}" width="200" height="200"><span>Photo {{ loop.index }}</span></label>
{% endfor %}<label class="card none"><input type="radio" name="choice" value="0" required><span>None of these</span></label>
</div></fieldset>
<fieldset><legend>How confident are you?</legend>
<div class="likert">
{% for value, text in likert %}<label class="card"><input type="radio" name="confidence" value="{{ value }}" required><b>{{ value }}</b><span>{{ text }}</span></label>
{% endfor %}</div></fieldset>
<button type="submit">Next</button>
</div>
</form>
{% endblock %}"""

DONE = """{% extends "base" %}{% block body %}
<div class="panel"><h1>Thank you!</h1><p>All {{ total }} answers are saved. You can close this page now.</p></div>
{% endblock %}"""

MESSAGE = """{% extends "base" %}{% block body %}
<div class="panel"><h1>{{ heading }}</h1><p>{{ message }}</p>{% if link %}<p><a href="{{ link }}">Continue the survey</a></p>{% endif %}</div>
{% endblock %}"""


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    loader = jinja2.DictLoader({"base": BASE, "consent": CONSENT, "question": QUESTION, "done": DONE, "message": MESSAGE})
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def render(page: str, *, csp_nonce: str, **context) -> bytes:
    template = _environment().get_template(page)
    context.setdefault("title", "Face recognition study")
    html = template.render(css=Markup(CSS), script=Markup(SCRIPT), csp_nonce=csp_nonce,
                           likert=LIKERT_LABELS, **context)
    return html.encode("utf-8")
