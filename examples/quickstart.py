"""roro quick start: train a tiny model, save two versions, tag one, then load and inspect them.

Run by `make demo` in an empty directory with RORO_HOME pointing at a fresh local store.
"""

import random

import roro


class LinearModel:
    """y = w * x + b, fitted by gradient descent: a stand-in for any picklable model."""

    def __init__(self, w=0.0, b=0.0):
        self.w, self.b = w, b

    def predict(self, x):
        return self.w * x + self.b


def train_machine_learning_model(data, epochs, log):
    model = LinearModel()
    for epoch in range(epochs):
        for x, y in data:
            err = model.predict(x) - y
            model.w -= 0.01 * err * x
            model.b -= 0.01 * err
        loss = sum((model.predict(x) - y) ** 2 for x, y in data) / len(data)
        log.write(f"epoch {epoch}: loss {loss:.4f}\n")
    return model, loss


rng = random.Random(2017)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(200))]

project = roro.get_current_project()
model_repo = project.get_model_repository("credit-risk")
print(f"store:   {project.store.url}\nproject: {project.name}\n")

for epochs, month in ((5, "201705"), (40, "201706")):
    with open("log.txt", "w") as log:
        model, loss = train_machine_learning_model(data, epochs, log)
    model_image = model_repo.new_image(model)
    model_image["Input-Data-Source"] = f"s3://credit-risk-dataset-{month}"
    model_image["Accuracy"] = round(1 - loss, 4)
    model_image["epochs"] = epochs
    model_image.attach("log.txt", open("log.txt"))
    model_image.save(comment=f"Built new model using the data till {month}")
    print(f"saved {model_repo.name}:{model_image.version}  {model_image.digest[:19]}…  "
          f"Accuracy={model_image.Accuracy}")

model_repo.add_tag("production", 2)
print(f"\ntags: {model_repo.get_tags()}")

# what another process would do later: load by tag and predict
model_image = model_repo.get_model_image(tag="production")
model = model_repo.get_model(tag="production")
print(f"\nloaded {model_repo.name}:{model_image.version} ({model_image.model_type}, "
      f"{model_image.model_size} bytes), saved by {model_image.author} at {model_image.timestamp}")
print(f"model.predict(2.0) = {model.predict(2.0):.3f}   (truth: 7.0)")
for att in model_image.get_attachments():
    print(f"attachment {att.name}: {att.size} bytes, {att.digest[:19]}…, "
          f"last line: {att.read().decode().splitlines()[-1]!r}")
print("\nhistory, newest first:")
for img in model_repo.list_model_images():
    print(f"  v{img.version}  {img.timestamp}  {img.comment}")
