"""Conversation evals: prove a model or prompt change before it ships (``manage.py evaluate``).

What belongs here: eval cases as files and their rules (``cases``), a throwaway database of
demo data (``sandbox``), playing a case through the live chat's own turn functions
(``runner``, ``suite``), judging it (``scoring``), recording and replaying model calls
(``recording``, ``differences``), and the results (``report``).

The evals sit above the staff side and reach the rest of ``chat`` only through
``chat.evals.engine``; nothing below imports them. Drafting a case from a real conversation is a
staff action (``chat.staff.eval_drafts``).
"""
