# The two things a newcomer runs; README.md explains both.
VENV := .venv
PYTHON ?= python3

.PHONY: demo test

# The suite's tools, every package pinned and hashed (tools/relock.py makes the lock from
# pyproject.toml's test extra).
$(VENV)/.installed: requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	touch $@

# Generate my-service/ with the default answers and serve it on 127.0.0.1:8000.
demo: $(VENV)/.installed
	bash tests/infra/docker-engine.sh start
	bash tests/infra/base-images.sh 3.14
	$(VENV)/bin/copier copy --defaults --vcs-ref HEAD --overwrite . my-service
	cd my-service && docker compose up --build --wait
	curl -s 127.0.0.1:8000/predict -H 'Content-Type: application/json' \
		-d @my-service/model/example-request.json
	@echo; echo "Serving at http://127.0.0.1:8000 -- stop with: cd my-service && docker compose down"

# The whole suite: questionnaire, render and lint every combination, docker build
# every combination, run each web x ML framework image.
test: $(VENV)/.installed
	$(VENV)/bin/pytest
