from .corpus import demo_corpus_in_use


def corpus_notice(request):
    """Tell every page when the product runs on the demo corpus, not the show."""
    return {"demo_corpus": demo_corpus_in_use()}
