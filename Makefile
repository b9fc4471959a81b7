# The README's two commands: `make run` (set up and run on the embedded Temporal dev server)
# and `make test` (set up and pass the tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
WEB_PORT ?= 8000
TEMPORAL_PORT ?= 7233
TEMPORAL_UI_PORT ?= 8233
export WEB_PORT TEMPORAL_PORT TEMPORAL_UI_PORT
export TEMPORAL_ADDRESS ?= 127.0.0.1:$(TEMPORAL_PORT)
export TEMPORAL_UI_URL ?= http://127.0.0.1:$(TEMPORAL_UI_PORT)
# The embedded dev server allows 200 Visibility calls/s (Procfile); a real cluster's limit is
# per frontend and shared, so production sets VISIBILITY_RPS to its own share of it.
export VISIBILITY_RPS ?= 100

# `make run-prod`: the production shape (docs/deployment.md); its state is in var/prod.
PG_PORT ?= 5433
REDIS_PORT ?= 6380
WEB_WORKERS ?= 3
PROD_VAR_DIR ?= var/prod
# Empty: bin/prod-env's 25 calls/s (see run-prod below).
PROD_VISIBILITY_RPS ?=

.PHONY: run setup test lint chromium redis-server dovecot run-prod bench bench-agents bench-mail bench-export bench-reports clean-data

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	touch $@

setup: $(VENV)/.installed
	mkdir -p var
	@# A random key per checkout (settings read it when SECRET_KEY is unset): no public key.
	test -s var/secret-key || (umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret-key)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py demo_users

run: setup
	@echo "Starting Temporal (Web UI $(TEMPORAL_UI_URL)), the worker, the mail intake (SMTP 127.0.0.1:$${MAIL_INTAKE_PORT:-2525}, IMAP poller) and the web app on http://127.0.0.1:$(WEB_PORT)"
	PATH="$(BIN):$$PATH" $(BIN)/honcho -f Procfile start

run-prod: $(VENV)/.installed redis-server
	@# VISIBILITY_RPS above is `make run`'s; bin/prod-env sets the deployment's budget to 25 of
	@# the 30 calls/s the stack's Temporal allows, unless PROD_VISIBILITY_RPS says otherwise.
	PATH="$(BIN):$$PATH" TRACERAIL_VAR_DIR="$(abspath $(PROD_VAR_DIR))" PG_PORT=$(PG_PORT) \
	  REDIS_PORT=$(REDIS_PORT) WEB_WORKERS=$(WEB_WORKERS) \
	  $(if $(PROD_VISIBILITY_RPS),VISIBILITY_RPS=$(PROD_VISIBILITY_RPS),env -u VISIBILITY_RPS) \
	  bin/run-prod

chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

redis-server:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# tests/test_imap_door.py starts a private Dovecot (Debian's dovecot-imapd) as its IMAP server.
dovecot:
	@test -x /usr/sbin/dovecot || (apt-get update -qq && apt-get install -y -qq dovecot-imapd)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	@# A binary committed once stays in every clone for good (issue 15's 2.9 MB wheel).
	$(BIN)/python bin/check-file-sizes
	@# Nothing writes into asgiref's, Django's or redis' insides (issue 22's thread defect).
	$(BIN)/python bin/check-private-writes

test: $(VENV)/.installed chromium redis-server dovecot lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python -m bench.pages

bench-agents: $(VENV)/.installed
	$(BIN)/python -m bench.agents

bench-mail: $(VENV)/.installed
	$(BIN)/python -m bench.mail

bench-export: $(VENV)/.installed
	$(BIN)/python -m bench.export

bench-reports: $(VENV)/.installed
	$(BIN)/python -m bench.reports

clean-data:
	rm -rf var/
