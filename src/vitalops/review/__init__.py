"""Human review of uncertain predictions: the rules that queue them, the queue, and decisions."""

from vitalops.review.queue import (
    TRANSITIONS,
    ReviewItem,
    decide,
    enqueue,
    list_items,
    queue_stats,
    review_if_needed,
)
from vitalops.review.rules import ReviewPolicy, ReviewReason, reasons_for

__all__ = ["TRANSITIONS", "ReviewItem", "ReviewPolicy", "ReviewReason", "decide", "enqueue", "list_items",
           "queue_stats", "reasons_for", "review_if_needed"]
