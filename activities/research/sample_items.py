"""The sample source's items: synthetic papers and repositories written for Autarky, none of them real.

Each one is invented (titles, authors, abstracts, repository names), so an offline stack has something to
gather, analyse, propose and digest. Some are squarely about the default interests (the offline analyser
scores them above the experiment threshold), the rest a realistic mix of near misses and other fields.
Ids are stable: gathering them again updates, never duplicates. Entries: (kind, id, title, authors,
abstract); sample_source.py labels them ("(sample)", source "sample").
"""

from __future__ import annotations

SAMPLE_ITEMS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    # --- papers squarely on the default interests ------------------------------------------------------
    (
        "paper",
        "paper-01",
        "Plan, Act, Verify: Tool-Using LLM Agents That Recover From Their Own Mistakes",
        ("Mira Okonkwo", "Tobias Lindqvist"),
        "We study LLM agents that decompose a task into a plan, call tools through function calling and "
        "verify each step before moving on. A self-reflection pass lets the agent notice a failed tool "
        "call and re-plan instead of repeating it. On three agent benchmarks our planner-verifier agent "
        "raises task success by 14 points over a ReAct-style baseline, with fewer tool calls.",
    ),
    (
        "paper",
        "paper-02",
        "Speculative Decoding With a Shared KV Cache for High-Throughput LLM Serving",
        ("Hannah Brecht", "Ravi Subramaniam", "Li Wen"),
        "Speculative decoding speeds up LLM inference by letting a small draft model propose tokens that "
        "the large language model verifies in one pass. We share the KV cache between draft and target "
        "model and combine it with continuous batching, so serving keeps its throughput under load. On a "
        "single GPU our server doubles tokens per second and cuts time to first token by 30%.",
    ),
    (
        "paper",
        "paper-03",
        "Leader Election Under Partial Partitions: Keeping Raft Linearizable",
        ("Sofia Marques", "Daniel Achterberg"),
        "Partial network partitions, where some replicas see each other and others do not, break the "
        "liveness of Raft: leader election can flap forever. We show a small change to the election "
        "rules that keeps linearizability and restores progress, and check it with a model checker and "
        "fault injection on a five-node replication cluster. The consensus change is ten lines of code.",
    ),
    (
        "paper",
        "paper-04",
        "Closing the Loop: A MAPE-K Controller for Self-Healing Microservices",
        ("Amara Nwosu", "Felix Hartmann"),
        "Autonomous systems that run services must detect faults and remediate them without a person. We "
        "build a MAPE-K control loop for microservices on Kubernetes: it monitors, analyses symptoms, "
        "plans a remediation and executes it, with runtime adaptation of its own thresholds. Over a month "
        "of fault injection the self-healing controller resolved 87% of incidents autonomously.",
    ),
    (
        "paper",
        "paper-05",
        "Warmup-Free Adam: Learning-Rate Schedules That Converge Without Tuning",
        ("Keiko Tanaka", "Oren Levi"),
        "Large-batch neural network training depends on a hand-tuned learning rate warmup. We analyse the "
        "early loss landscape and derive an optimizer, a variant of Adam with decoupled weight decay, "
        "whose effective learning rate adapts itself. It matches tuned schedules on five tasks without "
        "hyperparameter tuning and comes with a convergence proof for stochastic gradient descent.",
    ),
    (
        "paper",
        "paper-06",
        "Agents in the On-Call Rotation: Multi-Agent Incident Response With Function Calling",
        ("Priya Raman", "Jonas Weber", "Ana Ferreira"),
        "We put a team of LLM agents on call: a planner agent reads alerts, assigns sub-tasks to tool-using "
        "agents that query logs and metrics through function calling, and an orchestration layer keeps "
        "their agent memory consistent. In a replay of 400 real incidents the multi-agent system found "
        "the root cause first in 61% of cases and proposed a remediation a person approved in 48%.",
    ),
    # --- papers near the interests, or touching one in passing -----------------------------------------
    (
        "paper",
        "paper-07",
        "Where Did the Memory Go? Fragmentation in Long-Running GPU Training Jobs",
        ("Marek Nowak", "Chen Yu"),
        "Training jobs that run for weeks slowly lose usable GPU memory to allocator fragmentation. We "
        "trace allocations in six production jobs, show which tensor lifetimes cause it, and add an "
        "allocator hint that recovers 11% of memory without slowing the step.",
    ),
    (
        "paper",
        "paper-08",
        "Consistency Anomalies That Users of Collaborative Editors Actually Notice",
        ("Laila Haddad", "Victor Almeida"),
        "Collaborative editors replicate documents across devices and tolerate weak consistency. From 900 "
        "support tickets we classify the anomalies users report, and find most come from clock skew on "
        "phones rather than from the replication protocol itself.",
    ),
    (
        "paper",
        "paper-09",
        "A Benchmark of Code Review Comments Written by Language Models",
        ("Elena Popescu", "Sam Whitfield"),
        "We collect 12,000 code review comments, half written by people and half by language models, and "
        "ask maintainers which were useful. Model comments are more often correct about style and less "
        "often about logic. We release the dataset and a rubric for grading review comments.",
    ),
    (
        "paper",
        "paper-10",
        "Forecasting GPU Failures in Training Clusters From Telemetry",
        ("Grace Mbeki", "Arjun Patel"),
        "Hardware faults interrupt long training runs. From two years of telemetry of a 2,000-GPU cluster "
        "we train a forecaster of failures a day ahead, so a scheduler can drain nodes before they fail. "
        "Checkpoint intervals tuned to the forecast save 9% of lost compute.",
    ),
    (
        "paper",
        "paper-11",
        "Graph Neural Networks for City-Scale Traffic Forecasting",
        ("Luca Bianchi", "Yara Mansour"),
        "We forecast traffic speed on 8,000 road segments with a spatio-temporal graph neural network and "
        "compare it with classical baselines across three cities. Gains over seasonal averages are large "
        "at 15 minutes and vanish at two hours.",
    ),
    (
        "paper",
        "paper-12",
        "Privacy Budgets in Federated Learning: What Clients Actually Leak",
        ("Nadia Rahman", "Piotr Zielinski"),
        "Federated learning promises that data never leaves the client. We measure membership inference on "
        "four federated tasks under differential privacy and find the advertised privacy budgets hold "
        "only when client sampling is truly random, which deployed systems rarely guarantee.",
    ),
    (
        "paper",
        "paper-13",
        "Evaluating Retrieval for Question Answering Over Internal Wikis",
        ("Tomás Ortega", "Ingrid Solberg"),
        "Companies answer employee questions from internal wikis. We compare BM25, dense retrieval and "
        "their hybrid on 3,000 questions from two companies; the hybrid wins, and stale pages, not the "
        "retriever, cause most wrong answers.",
    ),
    (
        "paper",
        "paper-14",
        "Energy Use of Datacenter Cooling Under Variable Load",
        ("Henrik Dahl", "Fatima Zahra"),
        "We model the energy of datacenter cooling as load varies through the day and show that shifting "
        "batch jobs by two hours saves 6% of cooling energy in summer at no cost to deadlines.",
    ),
    # --- papers from other fields ---------------------------------------------------------------------
    (
        "paper",
        "paper-15",
        "Predicting Protein Stability Changes From Single Mutations",
        ("Aiko Mori", "Benedikt Graf"),
        "We predict how single amino-acid substitutions change protein stability, combining structure "
        "features with evolutionary conservation, and validate on 1,200 measured mutations.",
    ),
    (
        "paper",
        "paper-16",
        "Classifying Songbird Calls From Low-Cost Field Recorders",
        ("Emma Lindgren", "Kwame Asante"),
        "Low-cost recorders left in forests for a season capture thousands of hours of birdsong. We label "
        "28 species and show that a small spectrogram classifier runs on the recorder itself.",
    ),
    (
        "paper",
        "paper-17",
        "Denoising Microscopy Images Without Clean Targets",
        ("Isabel Romero", "Yusuf Demir"),
        "We train an image denoiser for fluorescence microscopy from pairs of noisy captures only, and "
        "show it preserves the fine structures biologists count.",
    ),
    (
        "paper",
        "paper-18",
        "Downscaling Regional Climate Projections With Diffusion Models",
        ("Olivia Grant", "Mateo Silva"),
        "We downscale coarse climate projections to 2 km over the Alps with a diffusion model and check "
        "extremes of precipitation against station records.",
    ),
    (
        "paper",
        "paper-19",
        "Reading Medieval Charters: Handwriting Recognition for Latin Abbreviations",
        ("Clara Neumann", "Jean-Luc Moreau"),
        "We transcribe 14th-century charters whose scribes abbreviate most words, and expand the "
        "abbreviations with a sequence model trained on editions.",
    ),
    (
        "paper",
        "paper-20",
        "Soil Moisture Estimation From Satellite Radar Over Farmland",
        ("Ahmed Karim", "Rosa Jiménez"),
        "We estimate field-scale soil moisture from satellite radar backscatter over a growing season and "
        "compare with probes on 60 fields.",
    ),
    # --- repositories squarely on the default interests ----------------------------------------------
    (
        "repository",
        "repo-01",
        "sample-agents/agentloop",
        ("sample-agents",),
        "A small agent framework for LLM agents: tool calling, planning and task decomposition, agent "
        "memory, self-reflection and multi-agent orchestration, with a web agent example.",
    ),
    (
        "repository",
        "repo-02",
        "sample-serving/tinyserve",
        ("sample-serving",),
        "LLM inference server: continuous batching, a paged KV cache, quantization and speculative "
        "decoding on one GPU; reports tokens per second, latency and time to first token.",
    ),
    # --- repositories near the interests or elsewhere -----------------------------------------------
    (
        "repository",
        "repo-03",
        "sample-dist/queue-bench",
        ("sample-dist",),
        "Benchmarks message queues on a three-node cluster: throughput and latency as producers grow.",
    ),
    (
        "repository",
        "repo-04",
        "sample-ops/runbook",
        ("sample-ops",),
        "Runbooks as code: checks a service's health and pages a person with the steps to take.",
    ),
    (
        "repository",
        "repo-05",
        "sample-ml/tune-lite",
        ("sample-ml",),
        "Hyperparameter search with early stopping for small experiments; plugs into any training script.",
    ),
    (
        "repository",
        "repo-06",
        "sample-data/gpu-telemetry",
        ("sample-data",),
        "Collects GPU temperature, power and error counters from a cluster into Prometheus.",
    ),
    (
        "repository",
        "repo-07",
        "sample-tools/prompt-lint",
        ("sample-tools",),
        "Lints prompt templates: unused variables, missing examples, inconsistent instructions.",
    ),
    (
        "repository",
        "repo-08",
        "sample-web/grid-kit",
        ("sample-web",),
        "A CSS grid framework for responsive websites, with a dozen ready layouts.",
    ),
    (
        "repository",
        "repo-09",
        "sample-docs/mdcheck",
        ("sample-docs",),
        "A Markdown linter and link checker for documentation sites.",
    ),
    (
        "repository",
        "repo-10",
        "sample-bio/seqflow",
        ("sample-bio",),
        "A bioinformatics pipeline for RNA-seq: alignment, counting and differential expression reports.",
    ),
    (
        "repository",
        "repo-11",
        "sample-geo/tilecache",
        ("sample-geo",),
        "Serves and caches map tiles from vector data, with a small admin page.",
    ),
    (
        "repository",
        "repo-12",
        "sample-audio/birdnet-lite",
        ("sample-audio",),
        "Identifies bird species from field recordings on a Raspberry Pi.",
    ),
    (
        "repository",
        "repo-13",
        "sample-fin/ledger-cli",
        ("sample-fin",),
        "Plain-text double-entry bookkeeping from the command line.",
    ),
    (
        "repository",
        "repo-14",
        "sample-edu/notebook-grader",
        ("sample-edu",),
        "Grades Jupyter notebook assignments with hidden tests and feedback for students.",
    ),
)
