"""A small instruction-tuning pool, written by the project, to show DEITA selection.

Eight topics, eight tasks each. Every task appears as:

- a plain question ("How do I ...?") with a helpful answer;
- a near-duplicate paraphrase ("What is the best way to ...?"), same answer;
- a harder, multi-part version with a fuller answer (higher complexity),
  and a near-duplicate rephrasing of it that scores about as high;
- for some tasks, an exact duplicate of the plain row, and a weak answer
  ("I am not sure.") with a low quality score.

Complexity (``evol_instruction_score``) and quality (``evol_response_score``)
lie in [1, 6] like DEITA's scorers. A good selection keeps the harder,
well-answered version of each task, skips the rephrasings, paraphrases and
duplicates of what it already has (they are within cosine distance 0.1), and
never spends the budget on the weak answers. With no diversity check, the
top of the score list holds both a detailed row and its rephrasing for many
tasks, and a budget of 64 covers only part of the tasks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TOPICS: dict[str, list[tuple[str, str]]] = {
    "python": [
        ("reverse a list in Python", "use slicing with a step of -1, or call list.reverse()"),
        ("read a CSV file in Python", "open it with the csv module or pandas.read_csv"),
        ("remove duplicates from a Python list", "convert it to a dict with dict.fromkeys"),
        ("handle exceptions in Python", "wrap the risky code in try and except blocks"),
        ("write a unit test in Python", "create a test function and run it with pytest"),
        ("sort a dictionary by value in Python", "call sorted on items() with a key function"),
        ("create a virtual environment in Python", "run python -m venv and activate it"),
        ("merge two dictionaries in Python", "use the | operator or dict unpacking"),
    ],
    "cooking": [
        ("bake sourdough bread", "feed the starter, mix, proof overnight and bake hot"),
        ("cook rice on the stove", "rinse it, simmer covered in water, then let it rest"),
        ("make a basic tomato sauce", "soften garlic in oil, add tomatoes and simmer"),
        ("boil an egg perfectly", "lower it into boiling water for seven minutes"),
        ("sharpen a kitchen knife", "hold a steady angle on a whetstone, then hone it"),
        ("make a vinaigrette", "whisk three parts oil with one part vinegar and salt"),
        ("roast vegetables evenly", "cut them evenly, oil them and roast at high heat"),
        ("store fresh herbs", "wrap them in a damp towel or stand them in water"),
    ],
    "travel": [
        ("pack light for a week-long trip", "choose layers that mix and roll your clothes"),
        ("find cheap flights", "compare dates, set fare alerts and fly mid-week"),
        ("avoid jet lag", "shift your sleep before leaving and get daylight on arrival"),
        ("travel with a small budget", "stay in hostels, cook and use public transport"),
        ("plan a road trip", "map the route, book stops and check the car first"),
        ("stay safe in a new city", "keep valuables hidden and learn the main areas"),
        ("learn basic phrases before travelling", "practise greetings with an app daily"),
        ("choose travel insurance", "compare medical cover, cancellation terms and limits"),
    ],
    "health": [
        ("improve my sleep", "keep a fixed schedule and avoid screens before bed"),
        ("start running as a beginner", "alternate walking and jogging three times a week"),
        ("drink more water during the day", "carry a bottle and drink with every meal"),
        ("reduce stress at work", "take short breaks, prioritise and breathe slowly"),
        ("stretch after exercise", "hold each stretch gently for thirty seconds"),
        ("eat more vegetables", "add one portion to every meal and snack on them"),
        ("improve my posture at a desk", "raise the screen and keep your feet flat"),
        ("build a morning routine", "wake at the same time and plan the first hour"),
    ],
    "finance": [
        ("make a monthly budget", "list income, fixed costs, then set spending limits"),
        ("start an emergency fund", "save a fixed amount automatically each payday"),
        ("pay off credit card debt", "pay the highest interest card first, then the next"),
        ("understand compound interest", "interest earns interest, so growth accelerates"),
        ("start investing with little money", "use a low-cost index fund and invest monthly"),
        ("track my expenses", "log every purchase in an app and review weekly"),
        ("save for retirement", "contribute early to a pension and raise it yearly"),
        ("compare two loan offers", "compare the total cost including fees, not the rate"),
    ],
    "history": [
        ("explain the causes of World War I", "alliances, militarism and an assassination"),
        ("describe the fall of the Roman Empire", "invasions, division and economic decline"),
        ("explain the Industrial Revolution", "machines and steam changed work and cities"),
        ("summarise the French Revolution", "debt and inequality led to the end of monarchy"),
        ("describe the Renaissance", "a revival of art and learning in Europe"),
        ("explain the Cold War", "a rivalry between the US and USSR without direct war"),
        ("describe ancient Egyptian pyramids", "royal tombs built with stone blocks and ramps"),
        ("explain the printing press's impact", "cheap books spread ideas and literacy"),
    ],
    "math": [
        ("solve a quadratic equation", "use the quadratic formula with a, b and c"),
        ("calculate a percentage increase", "divide the change by the original, times 100"),
        ("find the area of a circle", "multiply pi by the radius squared"),
        ("understand prime numbers", "a prime has exactly two divisors, one and itself"),
        ("compute an average", "add the values and divide by how many there are"),
        ("convert fractions to decimals", "divide the numerator by the denominator"),
        ("use the Pythagorean theorem", "the square of the hypotenuse is the sum of squares"),
        ("calculate probability of two events", "multiply them when they are independent"),
    ],
    "writing": [
        ("write a cover letter", "open with the role, show two achievements, then close"),
        ("write a clear email", "state the purpose first, keep it short, end with a request"),
        ("structure an essay", "introduction with a thesis, body paragraphs, conclusion"),
        ("write a short story", "give a character a goal, an obstacle and a change"),
        ("give feedback politely", "be specific, describe the impact and suggest a step"),
        ("write a product description", "lead with the benefit and add concrete details"),
        ("summarise a long article", "find the main claim and the strongest evidence"),
        ("write a persuasive speech", "open with a story, make three points, call to act"),
    ],
}


def _answer(task: str, how: str, detailed: bool) -> str:
    text = f"To {task}, {how}."
    if detailed:
        text += (
            f" Step by step: first prepare what you need, then {how}, and finally check "
            "the result. A common mistake is to rush the first step; an example and a "
            "short checklist follow so you can apply it right away."
        )
    return text


def load_sample() -> pd.DataFrame:
    """The embedded sample pool: 320 instruction/response rows.

    Returns
    -------
    frame : DataFrame
        Columns ``instruction``, ``response``, ``topic``, ``kind`` (``plain``,
        ``paraphrase``, ``detailed``, ``rephrased``, ``duplicate``, ``weak``),
        ``evol_instruction_score`` and ``evol_response_score``. The same call
        always returns the same rows.

    Examples
    --------
    >>> from skdeita.datasets import load_sample
    >>> df = load_sample()
    >>> df.shape
    (320, 6)
    >>> df["kind"].value_counts().to_dict()
    {'plain': 64, 'paraphrase': 64, 'detailed': 64, 'rephrased': 64, 'duplicate': 32, 'weak': 32}
    """
    rng = np.random.default_rng(20240101)
    rows = []
    for topic, tasks in TOPICS.items():
        for k, (task, how) in enumerate(tasks):
            base_c = rng.uniform(1.5, 3.0)
            base_q = rng.uniform(3.0, 5.0)
            plain = dict(
                instruction=f"How do I {task}?",
                response=_answer(task, how, False),
                topic=topic,
                kind="plain",
                evol_instruction_score=base_c,
                evol_response_score=base_q,
            )
            rows.append(plain)
            rows.append(
                {
                    **plain,
                    "instruction": f"What is the best way to {task}?",
                    "kind": "paraphrase",
                    "evol_instruction_score": base_c + rng.uniform(-0.3, 0.3),
                }
            )
            detailed = dict(
                instruction=(
                    f"Explain step by step how to {task}. Include an example, "
                    "the most common mistakes, and a short checklist."
                ),
                response=_answer(task, how, True),
                topic=topic,
                kind="detailed",
                evol_instruction_score=rng.uniform(4.0, 5.8),
                evol_response_score=rng.uniform(4.0, 5.8),
            )
            rows.append(detailed)
            rows.append(
                {
                    **detailed,
                    "instruction": (
                        f"Explain, step by step, how to {task}. Include an example, "
                        "the common mistakes and a short checklist."
                    ),
                    "kind": "rephrased",
                    "evol_instruction_score": detailed["evol_instruction_score"]
                    + rng.uniform(-0.2, 0.2),
                }
            )
            if k % 2 == 0:
                rows.append({**plain, "kind": "duplicate"})
            else:
                rows.append(
                    {
                        **plain,
                        "response": "I am not sure, sorry.",
                        "kind": "weak",
                        "evol_instruction_score": rng.uniform(1.5, 3.0),
                        "evol_response_score": rng.uniform(1.0, 1.6),
                    }
                )
    frame = pd.DataFrame(rows)
    for col in ("evol_instruction_score", "evol_response_score"):
        frame[col] = frame[col].round(2)
    return frame
