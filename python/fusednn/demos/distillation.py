"""Knowledge distillation (a small student from a large teacher's soft targets) and label
smoothing's effect on the confidence of the predictions."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "distillation"
TITLE = "Distillation and label smoothing"
CLAIM = ("A small student trained on a large teacher's softened outputs (temperature T, Hinton et al. 2015) "
         "learns more than from the hard labels alone, because the soft targets carry how similar the classes "
         "are; label smoothing keeps a network from becoming over-confident: it lowers the probability given to "
         "the predicted class.")

SMOOTHING = (0.0, 0.1, 0.2)


def _confidence(model, x, y):
    """(mean probability of the predicted class, expected calibration error over 10 equal-width
    bins, the probabilities of the predicted classes)."""
    from fusednn import ops
    p = ops.softmax(model.forward(x, training=False))
    top = p.max(axis=1)
    pred = p.argmax(axis=1)
    bins = np.minimum((top * 10).astype(int), 9)
    ece = sum(abs(np.mean(pred[bins == b] == y[bins == b]) - np.mean(top[bins == b])) * np.mean(bins == b)
              for b in range(10) if np.any(bins == b))
    return float(top.mean()), float(ece), top


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import nn, optim
    started = time.perf_counter()
    teacher_epochs, student_epochs = (5, 10) if quick else (30, 60)
    x, y = _common.digits("train")
    xt, yt = _common.digits("test")
    ce = nn.losses.SoftmaxCrossEntropy()
    teacher = nn.MLP([64, 256, 256, 10], seed=1)
    _common.train(teacher, ce, optim.Adam(teacher.parameter_groups(), lr=1e-3), x, y, epochs=teacher_epochs,
                  batch_size=32)
    teacher_logits = teacher.forward(x, training=False)
    teacher_test = teacher.forward(xt, training=False).argmax(axis=1)
    rows = []
    loss, acc = _common.evaluate(teacher, ce, xt, yt)
    rows.append({"part": "distillation", "model": "teacher 64-256-256-10", "training": "hard labels",
                 "parameters": teacher.num_parameters(), "test loss": loss, "test accuracy": acc,
                 "agreement with teacher": 1.0, "mean confidence": _confidence(teacher, xt, yt)[0]})
    students = {}
    for label, loss_fn, target in (("hard labels", ce, y),
                                   ("soft targets, T 4, alpha 0.9", nn.losses.DistillationLoss(4.0, 0.9),
                                    (y, teacher_logits))):
        student = nn.MLP([64, 16, 10], seed=0)
        _common.train(student, loss_fn, optim.Adam(student.parameter_groups(), lr=3e-3), x, target,
                      epochs=student_epochs, batch_size=32)
        loss, acc = _common.evaluate(student, ce, xt, yt)
        agree = float(np.mean(student.forward(xt, training=False).argmax(axis=1) == teacher_test))
        students[label] = acc
        rows.append({"part": "distillation", "model": "student 64-16-10", "training": label,
                     "parameters": student.num_parameters(), "test loss": loss, "test accuracy": acc,
                     "agreement with teacher": agree, "mean confidence": _confidence(student, xt, yt)[0]})
    confidence = {}
    for eps in SMOOTHING:
        model = nn.MLP([64, 256, 10], seed=0)
        _common.train(model, nn.losses.SoftmaxCrossEntropy(label_smoothing=eps),
                      optim.Adam(model.parameter_groups(), lr=1e-3), x, y, epochs=teacher_epochs, batch_size=32)
        loss, acc = _common.evaluate(model, ce, xt, yt)
        confidence[eps] = _confidence(model, xt, yt)
        rows.append({"part": "label smoothing", "model": "64-256-10", "training": f"label smoothing {eps:g}",
                     "parameters": model.num_parameters(), "test loss": loss, "test accuracy": acc,
                     "mean confidence": confidence[eps][0], "calibration error (ECE)": confidence[eps][1]})
    hard, soft = students["hard labels"], students["soft targets, T 4, alpha 0.9"]
    conf = [confidence[e][0] for e in SMOOTHING]
    measured = (f"on digits the student (16 hidden units) reaches a test accuracy of {soft:.3f} from the teacher's "
                f"soft targets and {hard:.3f} from the hard labels alone (teacher {rows[0]['test accuracy']:.3f}); "
                f"the mean probability of the predicted class is {' > '.join(f'{c:.3f}' for c in conf)} for label "
                f"smoothing {', '.join(f'{e:g}' for e in SMOOTHING)} (the calibration error goes "
                f"{', '.join(f'{confidence[e][1]:.3f}' for e in SMOOTHING)}: past the well-calibrated point, "
                f"smoothing makes the network under-confident)")
    columns = ["part", "model", "training", "parameters", "test loss", "test accuracy", "agreement with teacher",
               "mean confidence", "calibration error (ECE)"]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=soft > hard and all(b < a for a, b in zip(conf, conf[1:])),
        check="the soft-target student's test accuracy is above the hard-label student's, and the mean confidence "
              "falls as the smoothing rises")

    def draw(fig):
        axes = fig.subplots(1, 2)
        names = ["teacher", "student\nhard", "student\nsoft"]
        accs = [r["test accuracy"] for r in rows if r["part"] == "distillation"]
        axes[0].bar(names, accs, color=["C0", "C1", "C2"])
        axes[0].set_ylim(min(accs) - 0.05, 1.0)
        axes[0].set_ylabel("test accuracy")
        axes[0].set_title("distillation on digits", fontsize=9)
        for eps in SMOOTHING:
            axes[1].hist(confidence[eps][2], bins=np.linspace(0.3, 1.0, 36), histtype="step", lw=1.5,
                         label=f"smoothing {eps:g}")
        axes[1].set_yscale("log")
        axes[1].set_xlabel("probability of the predicted class")
        axes[1].set_ylabel("test samples")
        axes[1].set_title("label smoothing and confidence", fontsize=9)
        axes[1].legend(fontsize=8)
    return _common.finish(result, out_dir, [("distillation.png", (10, 3.8), draw)], dpi, started)
