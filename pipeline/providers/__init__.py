"""Labeling providers behind one interface (`base.Provider`): rules, gemini, gemini-batch, openai."""
