"""The MLproject entry points, one thin module each: parse, check, open the run, call the library, log.

Every entry point's module has ``main(argv)``; each step of the pipeline also has ``check_params(params,
pipeline=None)``: its rule for its own parameters, applied before anything runs. ``pipeline`` is None when the step
runs alone; run by ``main``, it maps each entry point of the pipeline to the parameters main passes it, so a step
can check its values against another step's (simulate needs the router's split to leave both arms users). ``cli``
builds every parser from MLproject.
"""
