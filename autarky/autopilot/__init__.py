"""The autopilot (MAPE-K loop): its types, settings, action catalogue, policy and detectors."""
