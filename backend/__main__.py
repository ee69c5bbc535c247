"""`python -m backend ...`"""

from backend.cli import leave, main

leave(main())
